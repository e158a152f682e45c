//! proptest strategies for every built-in type (owned values), and [`check_roundtrip`], for the
//! round-trip tests here and in the service modules.
//!
//! Floats are never NaN: NaN is unequal to itself, so value comparison would fail; NaN payloads
//! are covered by byte-level tests instead.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    dead_code
)]

use std::borrow::Cow;

use proptest::collection::{vec, SizeRange};
use proptest::option;
use proptest::prelude::*;

use super::{
    Array, ArrayValues, ByteString, DataValue, DateTime, DiagnosticInfo, ExpandedNodeId,
    ExtensionObject, ExtensionObjectBody, Guid, Identifier, LocalizedText, NodeId, NodeIdEncoding,
    QualifiedName, UaString, Variant, VariantArray, XmlElement,
};

/// Encodes `$v`, checks `encoded_len`, decodes it as `$ty` (consuming every byte), checks the
/// value and the re-encoded bytes, and evaluates to the decoded value as an owned value.
/// For use inside `proptest!` bodies (it returns `TestCaseError`s).
macro_rules! check_roundtrip {
    ($ty:ident, $v:expr) => {{
        let v = &$v;
        let bytes = $crate::encode::Encode::to_vec(v);
        ::proptest::prop_assert_eq!(
            bytes.len(),
            $crate::encode::Encode::encoded_len(v),
            "encoded_len differs from the bytes written"
        );
        let mut r = $crate::reader::Reader::new(&bytes);
        let d = <$ty as $crate::types::Decode>::decode(&mut r).map_err(|e| {
            ::proptest::test_runner::TestCaseError::fail(format!(
                "decode failed: {e} on {bytes:02x?}"
            ))
        })?;
        ::proptest::prop_assert_eq!(r.remaining(), 0, "decode left bytes over");
        ::proptest::prop_assert_eq!(r.depth(), 0, "nesting depth not restored");
        ::proptest::prop_assert_eq!(&d, v);
        ::proptest::prop_assert_eq!(&$crate::encode::Encode::to_vec(&d), &bytes);
        $crate::types::IntoStatic::into_static(d)
    }};
}
pub(crate) use check_roundtrip;

/// Raw string bytes: null, text (some non-ASCII), or arbitrary (possibly invalid UTF-8) bytes.
pub(crate) fn raw_bytes() -> impl Strategy<Value = Option<Cow<'static, [u8]>>> {
    prop_oneof![
        1 => Just(None),
        3 => "[a-zA-Z0-9 äö€:/._-]{0,12}".prop_map(|s| Some(Cow::Owned(s.into_bytes()))),
        1 => vec(any::<u8>(), 0..16).prop_map(|b| Some(Cow::Owned(b))),
    ]
}

/// Any String.
pub(crate) fn ua_string() -> impl Strategy<Value = UaString<'static>> {
    raw_bytes().prop_map(UaString)
}

/// Any ByteString.
pub(crate) fn byte_string() -> impl Strategy<Value = ByteString<'static>> {
    raw_bytes().prop_map(ByteString)
}

/// Any XmlElement.
pub(crate) fn xml_element() -> impl Strategy<Value = XmlElement<'static>> {
    raw_bytes().prop_map(XmlElement)
}

/// Any DateTime tick count.
pub(crate) fn date_time() -> impl Strategy<Value = DateTime> {
    prop_oneof![
        Just(DateTime(0)),
        Just(DateTime(i64::MAX)),
        any::<i64>().prop_map(DateTime)
    ]
}

/// Any Guid.
pub(crate) fn guid() -> impl Strategy<Value = Guid> {
    any::<(u32, u16, u16, [u8; 8])>().prop_map(|(data1, data2, data3, data4)| Guid {
        data1,
        data2,
        data3,
        data4,
    })
}

/// Any Float but NaN.
pub(crate) fn float() -> impl Strategy<Value = f32> {
    any::<f32>().prop_map(|x| if x.is_nan() { 0.0 } else { x })
}

/// Any Double but NaN.
pub(crate) fn double() -> impl Strategy<Value = f64> {
    any::<f64>().prop_map(|x| if x.is_nan() { 0.0 } else { x })
}

/// Namespace indexes, biased to the small values that select the short NodeId forms.
pub(crate) fn namespace() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), 0u16..300, any::<u16>()]
}

/// Any identifier, numeric ones biased to the TwoByte/FourByte ranges.
pub(crate) fn identifier() -> impl Strategy<Value = Identifier<'static>> {
    prop_oneof![
        (0u32..300).prop_map(Identifier::Numeric),
        (0u32..70_000).prop_map(Identifier::Numeric),
        any::<u32>().prop_map(Identifier::Numeric),
        ua_string().prop_map(Identifier::String),
        guid().prop_map(Identifier::Guid),
        byte_string().prop_map(Identifier::Opaque),
    ]
}

const FORMS: [NodeIdEncoding; 6] = [
    NodeIdEncoding::TwoByte,
    NodeIdEncoding::FourByte,
    NodeIdEncoding::Numeric,
    NodeIdEncoding::String,
    NodeIdEncoding::Guid,
    NodeIdEncoding::ByteString,
];

/// Any NodeId, in any wire form that can carry it (not only the smallest).
pub(crate) fn node_id() -> impl Strategy<Value = NodeId<'static>> {
    (namespace(), identifier(), 0usize..6).prop_map(|(ns, id, form)| {
        let mut n = NodeId::new(ns, id);
        let form = FORMS[form];
        if form.can_represent(n.namespace, &n.identifier) {
            n.encoding = form;
        }
        n
    })
}

/// Any ExpandedNodeId, with every flag combination.
pub(crate) fn expanded_node_id() -> impl Strategy<Value = ExpandedNodeId<'static>> {
    (node_id(), option::of(ua_string()), option::of(any::<u32>())).prop_map(
        |(node_id, namespace_uri, server_index)| ExpandedNodeId {
            node_id,
            namespace_uri,
            server_index,
        },
    )
}

/// Any QualifiedName.
pub(crate) fn qualified_name() -> impl Strategy<Value = QualifiedName<'static>> {
    (any::<u16>(), ua_string()).prop_map(|(namespace_index, name)| QualifiedName {
        namespace_index,
        name,
    })
}

/// Any LocalizedText, with every mask combination.
pub(crate) fn localized_text() -> impl Strategy<Value = LocalizedText<'static>> {
    (option::of(ua_string()), option::of(ua_string()))
        .prop_map(|(locale, text)| LocalizedText { locale, text })
}

/// Any ExtensionObject (raw body).
pub(crate) fn extension_object() -> impl Strategy<Value = ExtensionObject<'static>> {
    let body = prop_oneof![
        Just(ExtensionObjectBody::None),
        vec(any::<u8>(), 0..24).prop_map(|b| ExtensionObjectBody::ByteString(Cow::Owned(b))),
        "<a>[a-z]{0,8}</a>".prop_map(|s| ExtensionObjectBody::Xml(Cow::Owned(s.into_bytes()))),
    ];
    (node_id(), body).prop_map(|(type_id, body)| ExtensionObject { type_id, body })
}

fn diagnostic_fields() -> impl Strategy<Value = DiagnosticInfo<'static>> {
    (
        option::of(any::<i32>()),
        option::of(any::<i32>()),
        option::of(any::<i32>()),
        option::of(any::<i32>()),
        option::of(ua_string()),
        option::of(any::<u32>()),
    )
        .prop_map(
            |(
                symbolic_id,
                namespace_uri,
                locale,
                localized_text,
                additional_info,
                inner_status_code,
            )| DiagnosticInfo {
                symbolic_id,
                namespace_uri,
                locale,
                localized_text,
                additional_info,
                inner_status_code,
                inner_diagnostic_info: None,
            },
        )
}

/// Any DiagnosticInfo, nested up to 4 levels, every mask combination.
pub(crate) fn diagnostic_info() -> BoxedStrategy<DiagnosticInfo<'static>> {
    diagnostic_fields()
        .prop_recursive(4, 5, 1, |inner| {
            (diagnostic_fields(), inner).prop_map(|(mut d, inner)| {
                d.inner_diagnostic_info = Some(Box::new(inner));
                d
            })
        })
        .boxed()
}

/// A DataValue whose value (if any) comes from `value`, every mask combination.
pub(crate) fn data_value_with(
    value: impl Strategy<Value = Variant<'static>>,
) -> impl Strategy<Value = DataValue<'static>> {
    (
        option::of(value),
        option::of(any::<u32>()),
        option::of(date_time()),
        option::of(any::<u16>()),
        option::of(date_time()),
        option::of(any::<u16>()),
    )
        .prop_map(
            |(
                value,
                status,
                source_timestamp,
                source_picoseconds,
                server_timestamp,
                server_picoseconds,
            )| DataValue {
                value,
                status,
                source_timestamp,
                source_picoseconds,
                server_timestamp,
                server_picoseconds,
            },
        )
}

/// Any DataValue (values from [`variant`]).
pub(crate) fn data_value() -> impl Strategy<Value = DataValue<'static>> {
    data_value_with(variant())
}

/// Every non-recursive scalar Variant (all types but DataValue; DiagnosticInfo included).
pub(crate) fn scalar_variant() -> BoxedStrategy<Variant<'static>> {
    prop_oneof![
        Just(Variant::Empty),
        any::<bool>().prop_map(Variant::Boolean),
        any::<i8>().prop_map(Variant::SByte),
        any::<u8>().prop_map(Variant::Byte),
        any::<i16>().prop_map(Variant::Int16),
        any::<u16>().prop_map(Variant::UInt16),
        any::<i32>().prop_map(Variant::Int32),
        any::<u32>().prop_map(Variant::UInt32),
        any::<i64>().prop_map(Variant::Int64),
        any::<u64>().prop_map(Variant::UInt64),
        float().prop_map(Variant::Float),
        double().prop_map(Variant::Double),
        ua_string().prop_map(Variant::String),
        date_time().prop_map(Variant::DateTime),
        guid().prop_map(Variant::Guid),
        byte_string().prop_map(Variant::ByteString),
        xml_element().prop_map(Variant::XmlElement),
        node_id().prop_map(Variant::NodeId),
        expanded_node_id().prop_map(|v| Variant::ExpandedNodeId(Box::new(v))),
        any::<u32>().prop_map(Variant::StatusCode),
        qualified_name().prop_map(Variant::QualifiedName),
        localized_text().prop_map(Variant::LocalizedText),
        extension_object().prop_map(|v| Variant::ExtensionObject(Box::new(v))),
        diagnostic_info().prop_map(|v| Variant::DiagnosticInfo(Box::new(v))),
    ]
    .boxed()
}

/// An array field: exactly `len` elements when given, else null or 0..6 elements.
pub(crate) fn array_of<T: std::fmt::Debug + Clone + 'static>(
    elem: impl Strategy<Value = T> + 'static,
    len: Option<usize>,
) -> BoxedStrategy<Array<T>> {
    match len {
        Some(n) => vec(elem, SizeRange::from(n..=n)).prop_map(Some).boxed(),
        None => prop_oneof![1 => Just(None), 5 => vec(elem, 0..6).prop_map(Some)].boxed(),
    }
}

/// Arrays of every non-recursive element type (`len` as in [`array_of`]).
pub(crate) fn leaf_array_values(len: Option<usize>) -> BoxedStrategy<ArrayValues<'static>> {
    prop_oneof![
        array_of(any::<bool>(), len).prop_map(ArrayValues::Boolean),
        array_of(any::<i8>(), len).prop_map(ArrayValues::SByte),
        array_of(any::<u8>(), len).prop_map(ArrayValues::Byte),
        array_of(any::<i16>(), len).prop_map(ArrayValues::Int16),
        array_of(any::<u16>(), len).prop_map(ArrayValues::UInt16),
        array_of(any::<i32>(), len).prop_map(ArrayValues::Int32),
        array_of(any::<u32>(), len).prop_map(ArrayValues::UInt32),
        array_of(any::<i64>(), len).prop_map(ArrayValues::Int64),
        array_of(any::<u64>(), len).prop_map(ArrayValues::UInt64),
        array_of(float(), len).prop_map(ArrayValues::Float),
        array_of(double(), len).prop_map(ArrayValues::Double),
        array_of(ua_string(), len).prop_map(ArrayValues::String),
        array_of(date_time(), len).prop_map(ArrayValues::DateTime),
        array_of(guid(), len).prop_map(ArrayValues::Guid),
        array_of(byte_string(), len).prop_map(ArrayValues::ByteString),
        array_of(xml_element(), len).prop_map(ArrayValues::XmlElement),
        array_of(node_id(), len).prop_map(ArrayValues::NodeId),
        array_of(expanded_node_id(), len).prop_map(ArrayValues::ExpandedNodeId),
        array_of(any::<u32>(), len).prop_map(ArrayValues::StatusCode),
        array_of(qualified_name(), len).prop_map(ArrayValues::QualifiedName),
        array_of(localized_text(), len).prop_map(ArrayValues::LocalizedText),
        array_of(extension_object(), len).prop_map(ArrayValues::ExtensionObject),
        array_of(diagnostic_info(), len).prop_map(ArrayValues::DiagnosticInfo),
    ]
    .boxed()
}

/// ArrayDimensions: 1 to 3 dimensions of 1..=3, so the product is at most 27.
pub(crate) fn dimensions() -> impl Strategy<Value = Vec<i32>> {
    vec(1i32..=3, 1..=3)
}

fn product(dims: &[i32]) -> usize {
    dims.iter().map(|d| *d as usize).product()
}

/// Array Variants whose elements come from `values(len)`: one-dimensional (maybe null or
/// empty), or with dimensions consistent with the length.
pub(crate) fn array_variant(
    values: impl Fn(Option<usize>) -> BoxedStrategy<ArrayValues<'static>> + Clone + 'static,
) -> BoxedStrategy<Variant<'static>> {
    let flat = values(None).prop_map(|values| Variant::Array(VariantArray::new(values)));
    let shaped = dimensions().prop_flat_map(move |dims| {
        values(Some(product(&dims))).prop_map(move |values| {
            Variant::Array(VariantArray {
                values,
                dimensions: Some(dims.clone()),
            })
        })
    });
    prop_oneof![3 => flat, 1 => shaped].boxed()
}

/// Any Variant: scalars and arrays of every type, nested Variant and DataValue arrays and
/// DataValue scalars up to 3 levels, dimensions consistent with the lengths.
pub(crate) fn variant() -> BoxedStrategy<Variant<'static>> {
    let leaf = prop_oneof![3 => scalar_variant(), 2 => array_variant(leaf_array_values)];
    // prop_recursive alone mostly yields the recursive cases; mix the leaves back in.
    let nested = leaf.clone().prop_recursive(3, 32, 4, |inner| {
        let inner_for_arrays = inner.clone();
        let inner_for_values = inner.clone();
        prop_oneof![
            array_variant(move |len| array_of(inner_for_arrays.clone(), len)
                .prop_map(ArrayValues::Variant)
                .boxed()),
            array_variant(
                move |len| array_of(data_value_with(inner_for_values.clone()), len)
                    .prop_map(ArrayValues::DataValue)
                    .boxed()
            ),
            data_value_with(inner).prop_map(|d| Variant::DataValue(Box::new(d))),
        ]
    });
    prop_oneof![2 => leaf, 1 => nested].boxed()
}
