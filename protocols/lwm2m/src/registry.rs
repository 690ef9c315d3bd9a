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
