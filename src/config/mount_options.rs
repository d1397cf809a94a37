//! Parsing of fstab-style `-o name[=value],…` option lists.
//!
//! mount(8) hands a helper one comma-separated string per `-o`; users also write several
//! `-o` flags. Both forms end up here. Names are normalised (`-` → `_`, lower case) so
//! `-o disable-ssl` and `-o disable_ssl` are the same option. A value may contain `=`
//! (only the first one splits). Empty items (`a,,b`, trailing comma) are skipped, as
//! mount(8) does. What each name means is decided by [`super`]; this module only splits.

/// One `name[=value]` item of a `-o` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountOption {
    /// Normalised name: lower case, `_` instead of `-`.
    pub name: String,
    pub value: Option<String>,
}

impl MountOption {
    /// The option as the user wrote it (for messages), value included. Only call this for
    /// options known not to carry secrets.
    pub(crate) fn display(&self) -> String {
        match &self.value {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Splits every `-o` argument into options, in order (later ones win when applied).
pub(crate) fn parse_option_lists<S: AsRef<str>>(lists: &[S]) -> Vec<MountOption> {
    lists
        .iter()
        .flat_map(|list| list.as_ref().split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v.trim().to_string())),
                None => (item, None),
            };
            MountOption {
                name: name.trim().to_ascii_lowercase().replace('-', "_"),
                value,
            }
        })
        .collect()
}

/// Generic mount(8)/fstab options that mean nothing to ossmount and are accepted so that
/// fstab lines and `mount -a` work. `x-*` (userspace, e.g. `x-systemd.automount`) and
/// `comment=` are accepted too, see [`is_ignored_generic`].
const GENERIC_OPTIONS: &[&str] = &[
    "_netdev",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "defaults",
    "async",
    "sync",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "diratime",
    "nodiratime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "loud",
    "silent",
    "mand",
    "nomand",
    "iversion",
    "noiversion",
    "bg",
    "fg",
];

/// True for options that are accepted and ignored (see [`GENERIC_OPTIONS`]).
pub(crate) fn is_ignored_generic(name: &str) -> bool {
    GENERIC_OPTIONS.contains(&name)
        || name.starts_with("x_")
        || name == "comment"
        || name == "helper"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(name: &str, value: Option<&str>) -> MountOption {
        MountOption {
            name: name.to_string(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn splits_lists_and_values() {
        let opts = parse_option_lists(&[
            "region=ap-southeast-1,internal,ro",
            "uid=1000,,Allow-Other,",
        ]);
        assert_eq!(
            opts,
            vec![
                opt("region", Some("ap-southeast-1")),
                opt("internal", None),
                opt("ro", None),
                opt("uid", Some("1000")),
                opt("allow_other", None),
            ]
        );
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        let opts = parse_option_lists(&["endpoint=http://h/?a=b"]);
        assert_eq!(opts, vec![opt("endpoint", Some("http://h/?a=b"))]);
    }

    #[test]
    fn generic_options_are_recognised() {
        for name in [
            "_netdev",
            "auto",
            "noauto",
            "nofail",
            "defaults",
            "rw",
            "x_systemd.automount",
            "comment",
        ] {
            assert!(is_ignored_generic(name), "{name}");
        }
        assert!(!is_ignored_generic("region"));
        assert!(!is_ignored_generic("frobnicate"));
    }
}
