//! Small HL7 v2.5.1 data types (chapter 2A) and code tables (appendix A) shared by the ORU
//! builder and the ACKs, as neutral Rust values.

use crate::writer::Er7Writer;

/// HD, hierarchic designator (§2.A.33): applications and facilities in MSH-3..6.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hd {
    /// HD.1 namespace id, e.g. `XN-550`.
    pub namespace_id: String,
    /// HD.2 universal id, e.g. an ODS code or OID.
    pub universal_id: Option<String>,
    /// HD.3 universal id type (table 0301), e.g. `ISO`, `DNS`.
    pub universal_id_type: Option<String>,
}

impl From<&str> for Hd {
    fn from(s: &str) -> Self {
        Hd {
            namespace_id: s.to_owned(),
            ..Hd::default()
        }
    }
}

impl Hd {
    pub(crate) fn write(&self, w: &mut Er7Writer) {
        w.text(&self.namespace_id);
        if self.universal_id.is_some() || self.universal_id_type.is_some() {
            w.component()
                .text(self.universal_id.as_deref().unwrap_or(""));
            w.component()
                .text(self.universal_id_type.as_deref().unwrap_or(""));
        }
    }
}

/// One coded triplet of a CWE/CE value: identifier, text, coding system (§2.A.13, §2.A.8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coded {
    /// Identifier, e.g. `6690-2`.
    pub code: String,
    /// Display text, e.g. `Leukocytes [#/volume] in Blood`.
    pub text: String,
    /// Name of coding system (table 0396), e.g. `LN`, `UCUM`, `HL70487`, or `99zzz` (local).
    pub system: String,
}

impl Coded {
    /// A triplet from its three parts.
    pub fn new(code: &str, text: &str, system: &str) -> Coded {
        Coded {
            code: code.to_owned(),
            text: text.to_owned(),
            system: system.to_owned(),
        }
    }

    pub(crate) fn write(&self, w: &mut Er7Writer) {
        w.text(&self.code)
            .component()
            .text(&self.text)
            .component()
            .text(&self.system);
    }
}

/// CWE, coded with exceptions (§2.A.13): a primary triplet and an optional alternate.
///
/// For OBX-3 the primary triplet carries the mapped code (e.g. LOINC) and the alternate keeps
/// the analyser's local code (PROTOCOLS §2.3), so nothing the analyser said is lost.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cwe {
    /// CWE.1–3.
    pub primary: Coded,
    /// CWE.4–6.
    pub alternate: Option<Coded>,
}

impl From<Coded> for Cwe {
    fn from(primary: Coded) -> Self {
        Cwe {
            primary,
            alternate: None,
        }
    }
}

impl Cwe {
    /// A CWE with a primary and an alternate triplet.
    pub fn with_alternate(primary: Coded, alternate: Coded) -> Cwe {
        Cwe {
            primary,
            alternate: Some(alternate),
        }
    }

    pub(crate) fn write(&self, w: &mut Er7Writer) {
        self.primary.write(w);
        if let Some(alt) = &self.alternate {
            w.component();
            alt.write(w);
        }
    }
}

/// EI, entity identifier (§2.A.28): order numbers, equipment ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ei {
    /// EI.1 entity identifier.
    pub id: String,
    /// EI.2 namespace id (the assigning system or manufacturer).
    pub namespace_id: Option<String>,
}

impl From<&str> for Ei {
    fn from(s: &str) -> Self {
        Ei {
            id: s.to_owned(),
            namespace_id: None,
        }
    }
}

impl Ei {
    /// An EI with a namespace.
    pub fn with_namespace(id: &str, namespace_id: &str) -> Ei {
        Ei {
            id: id.to_owned(),
            namespace_id: Some(namespace_id.to_owned()),
        }
    }

    /// Writes EI as components (`id^ns`).
    pub(crate) fn write(&self, w: &mut Er7Writer) {
        w.text(&self.id);
        if let Some(ns) = &self.namespace_id {
            w.component().text(ns);
        }
    }

    /// Writes EI as subcomponents (`id&ns`), as inside EIP (SPM-2).
    pub(crate) fn write_sub(&self, w: &mut Er7Writer) {
        w.text(&self.id);
        if let Some(ns) = &self.namespace_id {
            w.subcomponent().text(ns);
        }
    }
}

/// MSH-11 processing id (table 0103).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingId {
    /// `P`: production.
    #[default]
    Production,
    /// `T`: training.
    Training,
    /// `D`: debugging.
    Debugging,
}

impl ProcessingId {
    /// The table 0103 code.
    pub fn code(self) -> &'static str {
        match self {
            ProcessingId::Production => "P",
            ProcessingId::Training => "T",
            ProcessingId::Debugging => "D",
        }
    }
}

/// MSH-15/MSH-16 acknowledgment type (table 0155), which selects enhanced mode (§2.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckType {
    /// `AL`: always.
    Always,
    /// `NE`: never.
    Never,
    /// `ER`: error/reject conditions only.
    ErrorOnly,
    /// `SU`: successful completion only.
    SuccessOnly,
}

impl AckType {
    /// The table 0155 code.
    pub fn code(self) -> &'static str {
        match self {
            AckType::Always => "AL",
            AckType::Never => "NE",
            AckType::ErrorOnly => "ER",
            AckType::SuccessOnly => "SU",
        }
    }

    /// Reads a table 0155 code.
    pub fn from_code(code: &str) -> Option<AckType> {
        Some(match code {
            "AL" => AckType::Always,
            "NE" => AckType::Never,
            "ER" => AckType::ErrorOnly,
            "SU" => AckType::SuccessOnly,
            _ => return None,
        })
    }
}
