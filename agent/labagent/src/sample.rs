//! The built-in analyser session: a complete blood count as a Sysmex XN-class analyser sends it
//! (E1394 records, CR-terminated). Synthetic: the patient is fictitious.

/// One CBC message, H..L.
pub const CBC_SESSION: &str = concat!(
    "H|\\^&|||XN-550^00-19^14718^^^^BD634545||||||||E1394-97\r",
    "P|1||PID-0001||Patient^Test||19800101|F\r",
    "O|1|SPEC-0001|1^1^SPEC-0001^B|^^^WBC\\^^^RBC\\^^^HGB\\^^^HCT\\^^^PLT|R||20261125101000||||N||||||||||||||F\r",
    "R|1|^^^WBC|6.42|10*3/uL||N||||LABTECH||20261125101500\r",
    "R|2|^^^RBC|4.71|10*6/uL||N||||LABTECH||20261125101500\r",
    "R|3|^^^HGB|13.9|g/dL||N||||LABTECH||20261125101500\r",
    "R|4|^^^HCT|41.2|%||N||||LABTECH||20261125101500\r",
    "R|5|^^^PLT|251|10*3/uL||N||||LABTECH||20261125101500\r",
    "L|1|N\r",
);
