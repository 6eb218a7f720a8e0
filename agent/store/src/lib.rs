//! labagent-store: durable store-and-forward journal. (Being built: issue 4.)
