//! CNI spec versions: which ones weft-cni speaks, and what each allows.
//!
//! The runtime picks the version (the network configuration's
//! `cniVersion`); the plugin either speaks exactly that version or refuses
//! with code 1, as libcni's own plugins do. `CHECK` needs 0.4.0 or later,
//! `STATUS` and `GC` need 1.1.0. Results before 1.0.0 carry a `"version"`
//! field in each IP; `mtu` on interfaces exists from 1.1.0.

use std::fmt;

use super::error::{code, CniError};

/// Every version weft-cni speaks, oldest first (what `VERSION` reports).
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version weft-cni speaks.
pub const LATEST: CniVersion = CniVersion::V1_1_0;

/// A CNI spec version weft-cni speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.0: the rich result (interfaces, ips with `version`), chaining.
    V0_3_0,
    /// 0.3.1: the same result as 0.3.0.
    V0_3_1,
    /// 0.4.0: adds `CHECK` and `prevResult` on `DEL`.
    V0_4_0,
    /// 1.0.0: ips lose their `version` field.
    V1_0_0,
    /// 1.1.0: adds `STATUS`, `GC` and `mtu` on interfaces.
    V1_1_0,
}

impl CniVersion {
    /// Every version, oldest first, in step with [`SUPPORTED`].
    pub const ALL: [CniVersion; 5] = [
        Self::V0_3_0,
        Self::V0_3_1,
        Self::V0_4_0,
        Self::V1_0_0,
        Self::V1_1_0,
    ];

    /// The version named `s` exactly, if weft-cni speaks it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The version as the spec spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// Whether results carry `"version": "4"` in each IP (before 1.0.0).
    pub fn ips_have_version(self) -> bool {
        self < Self::V1_0_0
    }

    /// Whether interfaces in results may carry `mtu` (1.1.0).
    pub fn interfaces_have_mtu(self) -> bool {
        self >= Self::V1_1_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version of a network configuration: its `cniVersion`, which must be
/// one weft-cni speaks (code 1 otherwise; a configuration without one is
/// 0.1.0 to CNI, which weft-cni does not speak).
pub fn negotiate(config_version: Option<&str>) -> Result<CniVersion, CniError> {
    let supported = SUPPORTED.join(", ");
    match config_version {
        None => Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "the network configuration has no cniVersion (CNI reads that as 0.1.0); weft-cni speaks {supported}"
            ),
        )),
        Some(v) => CniVersion::parse(v).ok_or_else(|| {
            CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {v:?} is not supported; weft-cni speaks {supported}"),
            )
        }),
    }
}

/// Refuses `command` on a configuration older than `min` (code 1).
pub fn require(command: &str, version: CniVersion, min: CniVersion) -> Result<(), CniError> {
    if version >= min {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("{command} needs cniVersion {min} or later; the configuration has {version}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_and_supported_agree() {
        let names: Vec<&str> = CniVersion::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(names, SUPPORTED);
        assert_eq!(CniVersion::ALL.last(), Some(&LATEST));
        for (i, v) in CniVersion::ALL.iter().enumerate() {
            assert_eq!(CniVersion::parse(v.as_str()), Some(*v));
            if i > 0 {
                assert!(CniVersion::ALL[i - 1] < *v, "ordered oldest first");
            }
        }
    }

    #[test]
    fn negotiation_accepts_exactly_the_supported_versions() {
        assert_eq!(negotiate(Some("1.1.0")).unwrap(), CniVersion::V1_1_0);
        assert_eq!(negotiate(Some("0.3.1")).unwrap(), CniVersion::V0_3_1);
        for bad in [
            "0.1.0", "0.2.0", "1.2.0", "2.0.0", "1.0", "", "v1.0.0", " 1.0.0",
        ] {
            let e = negotiate(Some(bad)).unwrap_err();
            assert_eq!(e.code, 1, "{bad}");
            assert_eq!(
                e.msg,
                format!(
                    "cniVersion {bad:?} is not supported; weft-cni speaks 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
                )
            );
        }
        let e = negotiate(None).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e
            .msg
            .starts_with("the network configuration has no cniVersion"));
    }

    #[test]
    fn features_by_version() {
        assert!(CniVersion::V0_4_0.ips_have_version());
        assert!(!CniVersion::V1_0_0.ips_have_version());
        assert!(!CniVersion::V1_0_0.interfaces_have_mtu());
        assert!(CniVersion::V1_1_0.interfaces_have_mtu());
        assert!(require("CHECK", CniVersion::V0_4_0, CniVersion::V0_4_0).is_ok());
        let e = require("GC", CniVersion::V1_0_0, CniVersion::V1_1_0).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(
            e.msg,
            "GC needs cniVersion 1.1.0 or later; the configuration has 1.0.0"
        );
    }
}
