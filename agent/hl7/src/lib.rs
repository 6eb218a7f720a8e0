//! labagent-hl7: HL7 v2 (ER7) model, ORU^R01 v2.5.1 builder and ACKs. (Being built: issue 3.)
