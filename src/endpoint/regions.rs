//! The built-in region table and region-derived endpoint names
//! (docs/seeds/003: "Regions and endpoints"; cn-north-2-gov-1 from docs/seeds/002).
//!
//! Endpoint names follow fixed rules (`oss-<region>.aliyuncs.com`,
//! `oss-<region>-internal.aliyuncs.com`), so a region missing from the table still works:
//! the table only adds the human name, whether the region is in mainland China and
//! whether transfer acceleration is offered. Users may write a region either as the
//! general id (`ap-southeast-1`) or the OSS id (`oss-ap-southeast-1`); the signer needs
//! the general id, so [`normalize_region`] strips the prefix.

use super::EndpointError;

/// Global transfer-acceleration endpoint (works for buckets in any region).
pub const ACCELERATE_ENDPOINT: &str = "oss-accelerate.aliyuncs.com";
/// Acceleration endpoint for buckets outside mainland China (traffic avoids mainland
/// acceleration nodes).
pub const ACCELERATE_OVERSEAS_ENDPOINT: &str = "oss-accelerate-overseas.aliyuncs.com";

/// One row of the built-in region table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// General region id, e.g. `cn-hangzhou` (the OSS id is `oss-` + this).
    pub id: &'static str,
    /// Human name, e.g. `China (Hangzhou)`.
    pub name: &'static str,
    /// In mainland China (Hong Kong is not).
    pub mainland_china: bool,
    /// Transfer acceleration is offered for buckets in this region.
    pub accelerate: bool,
}

const fn region(
    id: &'static str,
    name: &'static str,
    mainland_china: bool,
    accelerate: bool,
) -> RegionInfo {
    RegionInfo {
        id,
        name,
        mainland_china,
        accelerate,
    }
}

/// Every region listed in the seed documentation, in its order.
pub const REGIONS: &[RegionInfo] = &[
    region("cn-hangzhou", "China (Hangzhou)", true, true),
    region("cn-shanghai", "China (Shanghai)", true, true),
    region("cn-qingdao", "China (Qingdao)", true, true),
    region("cn-beijing", "China (Beijing)", true, true),
    region("cn-zhangjiakou", "China (Zhangjiakou)", true, true),
    region("cn-huhehaote", "China (Hohhot)", true, true),
    region("cn-wulanchabu", "China (Ulanqab)", true, true),
    region("cn-shenzhen", "China (Shenzhen)", true, true),
    region("cn-heyuan", "China (Heyuan)", true, false),
    region("cn-guangzhou", "China (Guangzhou)", true, true),
    region("cn-chengdu", "China (Chengdu)", true, true),
    region("cn-hongkong", "China (Hong Kong)", false, true),
    region("us-west-1", "US (Silicon Valley)", false, true),
    region("us-east-1", "US (Virginia)", false, true),
    region("ap-southeast-1", "Singapore", false, true),
    region("ap-southeast-2", "Australia (Sydney)", false, true),
    region("ap-southeast-3", "Malaysia (Kuala Lumpur)", false, true),
    region("ap-southeast-5", "Indonesia (Jakarta)", false, true),
    region("ap-northeast-1", "Japan (Tokyo)", false, true),
    region("ap-south-1", "India (Mumbai)", false, true),
    region("eu-central-1", "Germany (Frankfurt)", false, true),
    region("eu-west-1", "UK (London)", false, true),
    region("me-east-1", "UAE (Dubai)", false, false),
    region("cn-north-2-gov-1", "China North 2 Ali Gov 1", true, false),
];

/// The table row for a (normalised) region id.
pub fn find_region(id: &str) -> Option<&'static RegionInfo> {
    REGIONS.iter().find(|r| r.id == id)
}

/// Accepts `ap-southeast-1` or `oss-ap-southeast-1` (any case, surrounding spaces
/// ignored) and returns the general id. Rejects anything that cannot be part of a host
/// name: only `[a-z0-9-]`, 2–64 characters, no leading/trailing `-`, no `--`.
pub fn normalize_region(input: &str) -> Result<String, EndpointError> {
    let lower = input.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("oss-").unwrap_or(&lower);
    let bad = |reason: &str| EndpointError::InvalidRegion {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if bare.is_empty() {
        return Err(bad("it is empty"));
    }
    if bare.len() < 2 || bare.len() > 64 {
        return Err(bad("it must be 2 to 64 characters long"));
    }
    if let Some(c) = bare
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed (only letters, digits and '-')"
        )));
    }
    if bare.starts_with('-') || bare.ends_with('-') || bare.contains("--") {
        return Err(bad("'-' may not lead, trail or repeat"));
    }
    Ok(bare.to_string())
}

/// `oss-<region>.aliyuncs.com`.
pub fn public_endpoint(region: &str) -> String {
    format!("oss-{region}.aliyuncs.com")
}

/// `oss-<region>-internal.aliyuncs.com` (reachable from ECS/VPC in the same region,
/// no traffic fees).
pub fn internal_endpoint(region: &str) -> String {
    format!("oss-{region}-internal.aliyuncs.com")
}

/// `<region>.oss.aliyuncs.com` (IPv4/IPv6 dual stack).
pub fn dual_stack_endpoint(region: &str) -> String {
    format!("{region}.oss.aliyuncs.com")
}

/// Recognises the region in an OSS endpoint host (`oss-cn-hangzhou.aliyuncs.com`,
/// `oss-cn-hangzhou-internal.aliyuncs.com`, `cn-hangzhou.oss.aliyuncs.com`), with or
/// without a bucket label in front. `None` for other hosts (CNAMEs, IPs,
/// `oss-accelerate…`).
pub fn region_from_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host.split(':').next().unwrap_or("");
    let name = host.strip_suffix(".aliyuncs.com")?;
    if let Some(region) = name.strip_suffix(".oss") {
        let region = region.rsplit('.').next()?;
        return normalize_region(region).ok();
    }
    let label = name.rsplit('.').next()?;
    let region = label.strip_prefix("oss-")?;
    let region = region.strip_suffix("-internal").unwrap_or(region);
    if region.starts_with("accelerate") || region.is_empty() {
        return None;
    }
    normalize_region(region).ok()
}

/// One line of the region listing shown to users (`ossmount --list-regions`), from the
/// built-in table or from a live DescribeRegions answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRow {
    /// General region id (no `oss-` prefix).
    pub region: String,
    /// Human name, empty when unknown.
    pub name: String,
    pub public: String,
    pub internal: String,
    /// Acceleration endpoint(s), `-` when not offered.
    pub accelerate: String,
}

impl RegionRow {
    /// A row built from the rules for `region`, with the table's name and acceleration
    /// data when the region is known.
    pub fn for_region(region: &str) -> RegionRow {
        let info = find_region(region);
        let accelerate = match info {
            Some(i) if !i.accelerate => "-".to_string(),
            Some(i) if !i.mainland_china => {
                format!("{ACCELERATE_ENDPOINT}, {ACCELERATE_OVERSEAS_ENDPOINT}")
            }
            _ => ACCELERATE_ENDPOINT.to_string(),
        };
        RegionRow {
            region: region.to_string(),
            name: info.map(|i| i.name.to_string()).unwrap_or_default(),
            public: public_endpoint(region),
            internal: internal_endpoint(region),
            accelerate,
        }
    }
}

/// The built-in listing: one row per table region.
pub fn region_listing() -> Vec<RegionRow> {
    REGIONS
        .iter()
        .map(|r| RegionRow::for_region(r.id))
        .collect()
}

/// Renders rows as an aligned text table with a header line.
pub fn format_region_table(rows: &[RegionRow]) -> String {
    let header = ["REGION", "NAME", "PUBLIC", "INTERNAL", "ACCELERATE"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.region.as_str(),
                if r.name.is_empty() {
                    "-"
                } else {
                    r.name.as_str()
                },
                r.public.as_str(),
                r.internal.as_str(),
                r.accelerate.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(cells.iter()) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert_eq!(REGIONS.len(), 24);
        for r in REGIONS {
            assert_eq!(normalize_region(r.id).as_deref(), Ok(r.id), "{}", r.id);
            assert!(!r.name.is_empty());
            assert_eq!(
                REGIONS.iter().filter(|o| o.id == r.id).count(),
                1,
                "duplicate {}",
                r.id
            );
            // cn-* regions are mainland except Hong Kong.
            assert_eq!(
                r.mainland_china,
                r.id.starts_with("cn-") && r.id != "cn-hongkong"
            );
        }
        assert_eq!(
            find_region("cn-hangzhou").map(|r| r.name),
            Some("China (Hangzhou)")
        );
        assert!(find_region("oss-cn-hangzhou").is_none());
    }

    /// Every row of the seed document's classic-network table is in `REGIONS` with the
    /// same name, endpoints and acceleration support.
    #[test]
    fn table_matches_seed_document() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/seeds");
        let Some(text) = std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("003_"))
            .find_map(|e| std::fs::read_to_string(e.path()).ok())
        else {
            panic!("docs/seeds/003_*.txt not found");
        };
        let classic = text
            .split("## Regions and OSS endpoints in VPCs")
            .next()
            .unwrap_or_default();
        let mut seen = 0;
        // Rows start with `|Name|oss-id|public|internal|accelerate…` and may span lines.
        for row in classic.split("\n|").skip(1) {
            let cells: Vec<&str> = row.split('|').collect();
            if cells.len() < 5 || !cells[1].starts_with("oss-") {
                continue;
            }
            let name = cells[0].replace('\\', "");
            let id = normalize_region(cells[1]).expect("seed region id");
            let info = find_region(&id).unwrap_or_else(|| panic!("{id} missing from REGIONS"));
            assert_eq!(info.name, name, "{id}");
            assert_eq!(public_endpoint(&id), cells[2], "{id}");
            assert_eq!(internal_endpoint(&id), cells[3], "{id}");
            assert_eq!(
                info.accelerate,
                cells[4].contains(ACCELERATE_ENDPOINT),
                "{id}"
            );
            seen += 1;
        }
        assert_eq!(seen, 23);
    }

    #[test]
    fn region_forms() {
        assert_eq!(
            normalize_region("ap-southeast-1").as_deref(),
            Ok("ap-southeast-1")
        );
        assert_eq!(
            normalize_region(" OSS-AP-Southeast-1 ").as_deref(),
            Ok("ap-southeast-1")
        );
        assert_eq!(normalize_region("xx-new-9").as_deref(), Ok("xx-new-9"));
        for bad in [
            "",
            "oss-",
            "-cn",
            "cn-",
            "cn--x",
            "cn_hangzhou",
            "cn.hangzhou",
            "中",
            "a",
        ] {
            let e = normalize_region(bad).expect_err(bad);
            let msg = e.to_string();
            assert!(
                msg.contains("cn-hangzhou"),
                "message should show the form: {msg}"
            );
        }
        assert!(normalize_region(&"a".repeat(65)).is_err());
    }

    #[test]
    fn endpoint_names() {
        assert_eq!(
            public_endpoint("cn-hangzhou"),
            "oss-cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            internal_endpoint("cn-hangzhou"),
            "oss-cn-hangzhou-internal.aliyuncs.com"
        );
        assert_eq!(
            dual_stack_endpoint("cn-hangzhou"),
            "cn-hangzhou.oss.aliyuncs.com"
        );
    }

    #[test]
    fn region_from_hosts() {
        let cases = [
            ("oss-cn-hangzhou.aliyuncs.com", Some("cn-hangzhou")),
            ("oss-cn-hangzhou-internal.aliyuncs.com", Some("cn-hangzhou")),
            (
                "bkt.oss-ap-southeast-1.aliyuncs.com",
                Some("ap-southeast-1"),
            ),
            ("OSS-US-WEST-1.ALIYUNCS.COM:443", Some("us-west-1")),
            ("cn-beijing.oss.aliyuncs.com", Some("cn-beijing")),
            ("oss-accelerate.aliyuncs.com", None),
            ("oss-accelerate-overseas.aliyuncs.com", None),
            ("files.example.com", None),
            ("127.0.0.1:9000", None),
        ];
        for (host, want) in cases {
            assert_eq!(region_from_host(host).as_deref(), want, "{host}");
        }
    }

    #[test]
    fn listing_rows() {
        let rows = region_listing();
        assert_eq!(rows.len(), REGIONS.len());
        let hz = RegionRow::for_region("cn-hangzhou");
        assert_eq!(hz.accelerate, ACCELERATE_ENDPOINT);
        let sg = RegionRow::for_region("ap-southeast-1");
        assert!(sg.accelerate.contains(ACCELERATE_OVERSEAS_ENDPOINT));
        assert_eq!(RegionRow::for_region("cn-heyuan").accelerate, "-");
        let unknown = RegionRow::for_region("xx-new-1");
        assert_eq!(unknown.name, "");
        assert_eq!(unknown.public, "oss-xx-new-1.aliyuncs.com");
        let text = format_region_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), rows.len() + 1);
        assert!(lines[0].starts_with("REGION"));
        assert!(text.contains("cn-hangzhou"));
        assert!(text.contains("Germany (Frankfurt)"));
        // Columns are aligned: NAME starts at the same offset on every line.
        let col = lines[0].find("NAME").expect("NAME column");
        assert!(lines[1][col..].starts_with("China (Hangzhou)"));
    }
}
