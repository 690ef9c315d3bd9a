//! The object registry: object and resource definitions loaded from OMA DDF XML (the LwM2M
//! object definition format of the OMNA registry, `LWM2M.xsd`), used to type values that the
//! wire formats leave untyped (TLV, plain text, SenML numbers).
//!
//! The core objects 0–7 and the IPSO objects 3303, 3304 and 3311 are embedded
//! ([`Registry::core`]); more come from DDF file contents ([`Registry::load_ddf`]) or, as a
//! convenience that does file I/O, a directory ([`Registry::load_dir`]).

use std::collections::BTreeMap;

use crate::error::DdfError;
use crate::path::{Path, MAX_ID};
use crate::value::ResourceType;

/// The embedded DDF files.
const CORE_DDF: &[(&str, &str)] = &[
    ("0.xml", include_str!("../ddf/0.xml")),
    ("1.xml", include_str!("../ddf/1.xml")),
    ("2.xml", include_str!("../ddf/2.xml")),
    ("3.xml", include_str!("../ddf/3.xml")),
    ("4.xml", include_str!("../ddf/4.xml")),
    ("5.xml", include_str!("../ddf/5.xml")),
    ("6.xml", include_str!("../ddf/6.xml")),
    ("7.xml", include_str!("../ddf/7.xml")),
    ("3303.xml", include_str!("../ddf/3303.xml")),
    ("3304.xml", include_str!("../ddf/3304.xml")),
    ("3311.xml", include_str!("../ddf/3311.xml")),
];

/// What a resource allows (DDF `<Operations>`: `R`, `W`, `RW`, `E` or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations {
    /// Readable (and observable).
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl Operations {
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let mut ops = Operations::default();
        if s.eq_ignore_ascii_case("none") {
            return Some(ops);
        }
        for c in s.chars() {
            match c {
                'R' => ops.read = true,
                'W' => ops.write = true,
                'E' => ops.execute = true,
                _ => return None,
            }
        }
        Some(ops)
    }
}

/// A resource definition (DDF `<Item>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// The resource id.
    pub id: u16,
    /// `<Name>`.
    pub name: String,
    /// `<Operations>`.
    pub operations: Operations,
    /// `<MultipleInstances>Multiple`.
    pub multiple: bool,
    /// `<Mandatory>Mandatory`.
    pub mandatory: bool,
    /// `<Type>`.
    pub kind: ResourceType,
    /// `<RangeEnumeration>`, as written.
    pub range: String,
    /// `<Units>`.
    pub units: String,
    /// `<Description>`.
    pub description: String,
}

/// An object definition (DDF `<Object>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDef {
    /// `<ObjectID>`.
    pub id: u16,
    /// `<Name>`.
    pub name: String,
    /// `<ObjectURN>`.
    pub urn: String,
    /// `<LWM2MVersion>`, e.g. `1.1`.
    pub lwm2m_version: String,
    /// `<ObjectVersion>`, e.g. `1.0`.
    pub object_version: String,
    /// `<MultipleInstances>Multiple`.
    pub multiple: bool,
    /// `<Mandatory>Mandatory`.
    pub mandatory: bool,
    /// `<Description1>`.
    pub description: String,
    /// The resources by id.
    pub resources: BTreeMap<u16, ResourceDef>,
}

/// Object definitions by object id. Loading a definition for an id already present replaces it.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    objects: BTreeMap<u16, ObjectDef>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The embedded core objects (0–7) and IPSO 3303, 3304, 3311.
    pub fn core() -> Self {
        let mut r = Self::new();
        for (_, xml) in CORE_DDF {
            // The embedded files are checked by `tests::core_objects_load`; a failure there
            // cannot reach here at run time.
            let _ = r.load_ddf(xml);
        }
        r
    }

    /// Loads every `<Object>` of one DDF file's contents, returning their ids.
    pub fn load_ddf(&mut self, xml: &str) -> Result<Vec<u16>, DdfError> {
        let objects = parse_ddf(xml)?;
        let ids = objects.iter().map(|o| o.id).collect();
        for o in objects {
            self.objects.insert(o.id, o);
        }
        Ok(ids)
    }

    /// Loads every `*.xml` file in `dir` (not recursively). This is the crate's only file I/O.
    pub fn load_dir(&mut self, dir: &std::path::Path) -> Result<Vec<u16>, DdfError> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|source| io(dir, source))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")))
            .collect();
        files.sort();
        let mut ids = Vec::new();
        for f in files {
            let xml = std::fs::read_to_string(&f).map_err(|source| io(&f, source))?;
            ids.extend(self.load_ddf(&xml)?);
        }
        Ok(ids)
    }

    /// The definition of object `id`.
    pub fn object(&self, id: u16) -> Option<&ObjectDef> {
        self.objects.get(&id)
    }

    /// All definitions, by id.
    pub fn objects(&self) -> impl Iterator<Item = &ObjectDef> {
        self.objects.values()
    }

    /// The definition of resource `res` of object `obj`.
    pub fn resource(&self, obj: u16, res: u16) -> Option<&ResourceDef> {
        self.objects.get(&obj)?.resources.get(&res)
    }

    /// The type of the resource a path (of depth 3 or 4) names.
    pub fn resource_type(&self, path: &Path) -> Option<ResourceType> {
        Some(self.resource(path.object_id(), path.resource_id()?)?.kind)
    }

    /// Whether resource `res` of object `obj` is multiple-instance.
    pub fn is_multiple(&self, obj: u16, res: u16) -> Option<bool> {
        Some(self.resource(obj, res)?.multiple)
    }

    /// What resource `res` of object `obj` allows.
    pub fn operations(&self, obj: u16, res: u16) -> Option<Operations> {
        Some(self.resource(obj, res)?.operations)
    }
}

fn io(path: &std::path::Path, source: std::io::Error) -> DdfError {
    DdfError::Io {
        path: path.to_owned(),
        source,
    }
}

fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .map(|c| c.text().unwrap_or("").trim())
}

/// Parses the `<Object>` elements of a DDF document.
pub fn parse_ddf(xml: &str) -> Result<Vec<ObjectDef>, DdfError> {
    // DTDs are not used by DDF files; roxmltree rejects them by default (no entity expansion).
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    if !root.has_tag_name("LWM2M") {
        return Err(DdfError::Invalid {
            object: "?".into(),
            detail: "root element is not <LWM2M>".into(),
        });
    }
    root.children()
        .filter(|n| n.has_tag_name("Object"))
        .map(parse_object)
        .collect()
}

fn parse_object(node: roxmltree::Node<'_, '_>) -> Result<ObjectDef, DdfError> {
    let name = child_text(node, "Name").unwrap_or("").to_owned();
    let invalid = |detail: String| DdfError::Invalid {
        object: name.clone(),
        detail,
    };
    let id = child_text(node, "ObjectID")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|&id| id <= MAX_ID)
        .ok_or_else(|| invalid("missing or invalid <ObjectID>".into()))?;
    let mut resources = BTreeMap::new();
    if let Some(items) = node.children().find(|c| c.has_tag_name("Resources")) {
        for item in items.children().filter(|c| c.has_tag_name("Item")) {
            let r = parse_item(item).map_err(|d| invalid(format!("/{id}: {d}")))?;
            if resources.insert(r.id, r).is_some() {
                return Err(invalid("duplicate resource id".into()));
            }
        }
    }
    Ok(ObjectDef {
        id,
        urn: child_text(node, "ObjectURN").unwrap_or("").to_owned(),
        lwm2m_version: child_text(node, "LWM2MVersion").unwrap_or("1.0").to_owned(),
        object_version: child_text(node, "ObjectVersion").unwrap_or("1.0").to_owned(),
        multiple: child_text(node, "MultipleInstances") == Some("Multiple"),
        mandatory: child_text(node, "Mandatory") == Some("Mandatory"),
        description: child_text(node, "Description1").unwrap_or("").to_owned(),
        name,
        resources,
    })
}

fn parse_item(item: roxmltree::Node<'_, '_>) -> Result<ResourceDef, String> {
    let id = item
        .attribute("ID")
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|&id| id <= MAX_ID)
        .ok_or("<Item> without a valid ID")?;
    let text = |n| child_text(item, n).unwrap_or("");
    let operations = Operations::parse(text("Operations")).ok_or_else(|| format!("resource {id}: bad <Operations>"))?;
    let kind = ResourceType::from_name(text("Type")).ok_or_else(|| format!("resource {id}: bad <Type>"))?;
    Ok(ResourceDef {
        id,
        name: text("Name").to_owned(),
        operations,
        multiple: text("MultipleInstances") == "Multiple",
        mandatory: text("Mandatory") == "Mandatory",
        kind,
        range: text("RangeEnumeration").to_owned(),
        units: text("Units").to_owned(),
        description: text("Description").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn core_objects_load() {
        let mut r = Registry::new();
        for (file, xml) in CORE_DDF {
            let ids = r.load_ddf(xml).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(format!("{}.xml", ids[0]), *file);
        }
        let core = Registry::core();
        let ids: Vec<u16> = core.objects().map(|o| o.id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7, 3303, 3304, 3311]);
        for o in core.objects() {
            assert!(o.urn.starts_with("urn:oma:lwm2m:"), "{}", o.id);
            assert!(!o.resources.is_empty());
        }
    }

    #[test]
    fn lookups() {
        let r = Registry::core();
        let res = r.resource(3, 0).unwrap();
        assert_eq!(
            (res.name.as_str(), res.kind, res.multiple),
            ("Manufacturer", ResourceType::String, false)
        );
        assert_eq!(r.is_multiple(3, 6), Some(true));
        assert_eq!(r.resource_type(&"/3/0/13".parse().unwrap()), Some(ResourceType::Time));
        assert_eq!(
            r.resource_type(&"/3/0/7/1".parse().unwrap()),
            Some(ResourceType::Integer)
        );
        assert_eq!(r.resource_type(&"/3/0".parse().unwrap()), None);
        assert_eq!(r.resource_type(&"/3/0/999".parse().unwrap()), None);
        assert_eq!(
            r.operations(3, 4),
            Some(Operations {
                read: false,
                write: false,
                execute: true
            })
        );
        assert_eq!(
            r.operations(1, 1),
            Some(Operations {
                read: true,
                write: true,
                execute: false
            })
        );
        assert_eq!(
            r.resource_type(&"/3303/0/5700".parse().unwrap()),
            Some(ResourceType::Float)
        );
        assert_eq!(
            r.resource_type(&"/3311/0/5850".parse().unwrap()),
            Some(ResourceType::Boolean)
        );
        assert_eq!(r.resource_type(&"/5/0/0".parse().unwrap()), Some(ResourceType::Opaque));
        assert!(!r.object(3).unwrap().multiple);
        assert!(r.object(3303).unwrap().multiple);
    }

    /// Spot checks of facts of the embedded definitions against the OMNA registry (objects 0 1.2,
    /// 1 1.2, 2 1.1, 3 1.2, 4 1.3, 5 1.1, 6 1.0, 7 1.0, 3303 1.1, 3304 1.1, 3311 1.0), mostly ones
    /// that were once wrong here.
    #[test]
    fn core_definitions_match_the_omna_registry() {
        use ResourceType as T;
        let r = Registry::core();
        // (object, urn, LWM2MVersion, ObjectVersion)
        for (id, urn, lwm2m, version) in [
            (0, "urn:oma:lwm2m:oma:0:1.2", "1.1", "1.2"),
            (1, "urn:oma:lwm2m:oma:1:1.2", "1.2", "1.2"),
            (2, "urn:oma:lwm2m:oma:2:1.1", "1.0", "1.1"),
            (3, "urn:oma:lwm2m:oma:3:1.2", "1.1", "1.2"),
            (4, "urn:oma:lwm2m:oma:4:1.3", "1.1", "1.3"),
            (5, "urn:oma:lwm2m:oma:5:1.1", "1.1", "1.1"),
            (6, "urn:oma:lwm2m:oma:6", "1.0", "1.0"),
            (7, "urn:oma:lwm2m:oma:7", "1.0", "1.0"),
            (3303, "urn:oma:lwm2m:ext:3303:1.1", "1.0", "1.1"),
            (3304, "urn:oma:lwm2m:ext:3304:1.1", "1.0", "1.1"),
            (3311, "urn:oma:lwm2m:ext:3311", "1.0", "1.0"),
        ] {
            let o = r.object(id).unwrap();
            assert_eq!(
                (o.urn.as_str(), o.lwm2m_version.as_str(), o.object_version.as_str()),
                (urn, lwm2m, version),
                "object {id}"
            );
        }
        assert_eq!(r.object(0).unwrap().name, "LWM2M Security");
        let ids = |obj: u16| r.object(obj).unwrap().resources.keys().copied().collect::<Vec<_>>();
        assert_eq!(ids(0), (0..=30).collect::<Vec<_>>());
        assert_eq!(ids(1), (0..=27).collect::<Vec<_>>());
        assert_eq!(ids(4), (0..=13).collect::<Vec<_>>());
        assert_eq!(ids(5), [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        assert_eq!(ids(6), (0..=6).collect::<Vec<_>>());

        // (object, resource) -> (name, operations, multiple, mandatory, type, range, units)
        let fact = |obj: u16, res: u16| {
            let d = r.resource(obj, res).unwrap_or_else(|| panic!("/{obj}/{res} missing"));
            let o = d.operations;
            let ops: String = [(o.read, 'R'), (o.write, 'W'), (o.execute, 'E')]
                .iter()
                .filter_map(|&(on, c)| on.then_some(c))
                .collect();
            (
                d.name.clone(),
                ops,
                d.multiple,
                d.mandatory,
                d.kind,
                d.range.clone(),
                d.units.clone(),
            )
        };
        let f = |name: &str, ops: &str, multiple, mandatory, kind, range: &str, units: &str| {
            (
                name.to_owned(),
                ops.to_owned(),
                multiple,
                mandatory,
                kind,
                range.to_owned(),
                units.to_owned(),
            )
        };
        let cases = [
            ((0, 0), f("LWM2M Server URI", "", false, true, T::String, "0..255", "")),
            (
                (0, 8),
                f("SMS Binding Secret Key(s)", "", false, false, T::Opaque, "16,32,48", ""),
            ),
            (
                (0, 18),
                f(
                    "Groups To Use by Client",
                    "",
                    true,
                    false,
                    T::UnsignedInteger,
                    "0..65535",
                    "",
                ),
            ),
            ((0, 26), f("MQTT Server", "", false, false, T::Objlnk, "", "")),
            (
                (0, 28),
                f("RDS Destination Port", "", false, false, T::Integer, "0..15", ""),
            ),
            ((1, 1), f("Lifetime", "RW", false, true, T::UnsignedInteger, "", "s")),
            (
                (1, 13),
                f(
                    "Registration Priority Order",
                    "R",
                    false,
                    false,
                    T::UnsignedInteger,
                    "",
                    "",
                ),
            ),
            (
                (1, 14),
                f(
                    "Initial Registration Delay Timer",
                    "RW",
                    false,
                    false,
                    T::UnsignedInteger,
                    "",
                    "s",
                ),
            ),
            (
                (1, 16),
                f(
                    "Bootstrap on Registration Failure",
                    "R",
                    false,
                    false,
                    T::Boolean,
                    "",
                    "",
                ),
            ),
            (
                (1, 20),
                f(
                    "Communication Sequence Retry Count",
                    "RW",
                    false,
                    false,
                    T::UnsignedInteger,
                    "",
                    "",
                ),
            ),
            ((1, 24), f("Alternate APN Links", "RW", true, false, T::Objlnk, "", "")),
            (
                (1, 26),
                f("Default Notification Mode", "RW", false, false, T::Integer, "0..1", ""),
            ),
            ((2, 2), f("ACL", "RW", true, false, T::Integer, "0..31", "")),
            ((3, 7), f("Power Source Voltage", "R", true, false, T::Integer, "", "")),
            (
                (3, 9),
                f("Battery Level", "R", false, false, T::Integer, "0..100", "/100"),
            ),
            ((3, 10), f("Memory Free", "R", false, false, T::Integer, "", "")),
            ((3, 11), f("Error Code", "R", true, true, T::Integer, "0..32", "")),
            ((4, 2), f("Radio Signal Strength", "R", false, true, T::Integer, "", "")),
            ((4, 9), f("SMNC", "R", false, false, T::Integer, "0..999", "")),
            (
                (4, 13),
                f("Coverage Enhancement Level", "R", false, false, T::Integer, "0..4", ""),
            ),
            ((5, 1), f("Package URI", "RW", false, true, T::String, "0..255", "")),
            ((5, 5), f("Update Result", "R", false, true, T::Integer, "0..11", "")),
            ((5, 10), f("Cancel", "E", false, false, T::None, "", "")),
            ((5, 12), f("Last State Change Time", "R", false, false, T::Time, "", "")),
            (
                (5, 13),
                f("Maximum Defer Period", "RW", false, false, T::UnsignedInteger, "", "s"),
            ),
            ((6, 0), f("Latitude", "R", false, true, T::Float, "", "lat")),
            ((6, 5), f("Timestamp", "R", false, true, T::Time, "", "")),
            ((7, 2), f("Tx Data", "R", false, false, T::Integer, "", "")),
            ((7, 4), f("Max Message Size", "R", false, false, T::Integer, "", "B")),
            ((3303, 5518), f("Timestamp", "R", false, false, T::Time, "", "")),
            (
                (3303, 6050),
                f("Fractional Timestamp", "R", false, false, T::Float, "0..1", "s"),
            ),
            (
                (3304, 6042),
                f(
                    "Measurement Quality Indicator",
                    "R",
                    false,
                    false,
                    T::Integer,
                    "0..23",
                    "",
                ),
            ),
            (
                (3311, 5851),
                f("Dimmer", "RW", false, false, T::Integer, "0..100", "/100"),
            ),
            ((3311, 5852), f("On time", "RW", false, false, T::Integer, "", "s")),
            ((3311, 5820), f("Power factor", "R", false, false, T::Float, "", "")),
        ];
        for ((obj, res), want) in cases {
            assert_eq!(fact(obj, res), want, "/{obj}/{res}");
        }
    }

    #[test]
    fn load_custom_and_reject() {
        let xml = r#"<?xml version="1.0"?><LWM2M><Object ObjectType="MODefinition"><Name>X</Name>
            <ObjectID>10241</ObjectID><ObjectURN>urn:oma:lwm2m:x:10241</ObjectURN><MultipleInstances>Multiple</MultipleInstances>
            <Mandatory>Optional</Mandatory><Resources><Item ID="1"><Name>A</Name><Operations>RW</Operations>
            <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory><Type>Unsigned Integer</Type>
            <RangeEnumeration/><Units/><Description>a</Description></Item></Resources></Object></LWM2M>"#;
        let mut r = Registry::new();
        assert_eq!(r.load_ddf(xml).unwrap(), [10241]);
        assert_eq!(r.resource(10241, 1).unwrap().kind, ResourceType::UnsignedInteger);
        assert!(r.load_ddf("<LWM2M><Object>").is_err());
        assert!(r.load_ddf("<X/>").is_err());
        assert!(r
            .load_ddf("<LWM2M><Object><ObjectID>65535</ObjectID></Object></LWM2M>")
            .is_err());
        let bad_type = xml.replace("Unsigned Integer", "Decimal");
        assert!(r.load_ddf(&bad_type).is_err());
        let bad_ops = xml.replace(">RW<", ">RX<");
        assert!(r.load_ddf(&bad_ops).is_err());
        assert!(r
            .load_ddf(r#"<!DOCTYPE x [<!ENTITY a "aaaa">]><LWM2M><Object><ObjectID>&a;</ObjectID></Object></LWM2M>"#)
            .is_err());
    }

    #[test]
    fn load_dir() {
        let dir = std::env::temp_dir().join(format!("unigate-lwm2m-ddf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("3.xml"), CORE_DDF[3].1).unwrap();
        std::fs::write(dir.join("readme.txt"), "not xml").unwrap();
        let mut r = Registry::new();
        let ids = r.load_dir(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(ids.unwrap(), [3]);
        assert!(Registry::new()
            .load_dir(std::path::Path::new("/nonexistent-ddf-dir"))
            .is_err());
    }
}
