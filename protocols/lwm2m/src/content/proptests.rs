//! Property tests: for every format that carries many values, encoding then decoding gives the
//! values back (sorted by path), with types from the registry.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use crate::content::{decode, encode, ContentFormat};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::{ResourceType, Value};
use crate::Limits;

fn value(ty: ResourceType) -> BoxedStrategy<Value> {
    match ty {
        ResourceType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        ResourceType::Time => any::<i64>().prop_map(Value::Time).boxed(),
        ResourceType::UnsignedInteger => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
        ResourceType::Float => prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            any::<f32>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(f64::from),
            (-1000i32..1000).prop_map(f64::from),
        ]
        .prop_map(Value::Float)
        .boxed(),
        ResourceType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        ResourceType::String => ".{0,40}".prop_map(Value::String).boxed(),
        ResourceType::Corelnk => "[ -~]{0,20}".prop_map(Value::Corelnk).boxed(),
        ResourceType::Opaque => proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(Value::Opaque)
            .boxed(),
        ResourceType::Objlnk => (any::<u16>(), any::<u16>())
            .prop_map(|(o, i)| Value::Objlnk(o, i))
            .boxed(),
        ResourceType::None => unreachable!("executable resources are filtered out"),
    }
}

/// An object instance of a core object and some of its resources with values; multiple
/// resources get one to three instances.
fn instance_content() -> impl Strategy<Value = (Path, Vec<(Path, Value)>)> {
    let registry = Registry::core();
    type Resources = Vec<(u16, ResourceType, bool)>;
    let objects: Vec<(u16, Resources)> = registry
        .objects()
        .map(|o| {
            let res = o
                .resources
                .values()
                .filter(|r| r.kind != ResourceType::None)
                .map(|r| (r.id, r.kind, r.multiple))
                .collect();
            (o.id, res)
        })
        .collect();
    (proptest::sample::select(objects), 0u16..4).prop_flat_map(|((obj, res), inst)| {
        let n = res.len();
        proptest::sample::subsequence(res, 1..=n.min(8)).prop_flat_map(move |chosen| {
            let per_resource: Vec<BoxedStrategy<Vec<(Path, Value)>>> = chosen
                .into_iter()
                .map(|(rid, ty, multiple)| {
                    let path = Path::resource(obj, inst, rid).unwrap();
                    if multiple {
                        proptest::collection::btree_map(0u16..400, value(ty), 1..4)
                            .prop_map(move |m| m.into_iter().map(|(ri, v)| (path.child(ri).unwrap(), v)).collect())
                            .boxed()
                    } else {
                        value(ty).prop_map(move |v| vec![(path, v)]).boxed()
                    }
                })
                .collect();
            per_resource.prop_map(move |vs| (Path::instance(obj, inst).unwrap(), vs.into_iter().flatten().collect()))
        })
    })
}

fn round_trip(format: ContentFormat, base: Option<&Path>, content: &[(Path, Value)]) -> Vec<(Path, Value)> {
    let bytes = encode(format, base, content).unwrap();
    decode(format, base, &bytes, &Registry::core(), &Limits::default()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn encode_then_decode_is_identity((base, content) in instance_content()) {
        let mut expected = content.clone();
        expected.sort_by_key(|a| a.0);
        let object = base.parent().unwrap_or(base).truncated(1);
        for format in [
            ContentFormat::Tlv,
            ContentFormat::SenmlJson,
            ContentFormat::SenmlCbor,
            ContentFormat::Lwm2mJson,
            ContentFormat::Lwm2mCbor,
        ] {
            prop_assert_eq!(&round_trip(format, Some(&base), &content), &expected, "{:?} at {}", format, base);
            prop_assert_eq!(&round_trip(format, Some(&object), &content), &expected, "{:?} at {}", format, object);
            if format != ContentFormat::Tlv {
                prop_assert_eq!(&round_trip(format, None, &content), &expected, "{:?} at /", format);
            }
        }
        // Single values: each resource (instance) alone, also as text.
        for item in &expected {
            let one = std::slice::from_ref(item);
            for format in [ContentFormat::Tlv, ContentFormat::SenmlCbor, ContentFormat::Text] {
                prop_assert_eq!(&round_trip(format, Some(&item.0), one), one, "{:?} at {}", format, item.0);
            }
        }
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), depth in 1usize..5) {
        let base = Path::new(&[3, 0, 6, 1][..depth]).unwrap();
        let r = Registry::core();
        let l = Limits::default();
        for format in [
            ContentFormat::Tlv,
            ContentFormat::SenmlJson,
            ContentFormat::SenmlCbor,
            ContentFormat::Lwm2mJson,
            ContentFormat::Lwm2mCbor,
            ContentFormat::Text,
            ContentFormat::Opaque,
        ] {
            let _ = decode(format, Some(&base), &bytes, &r, &l);
        }
    }
}
