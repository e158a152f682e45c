//! `ua_struct!`: one declaration per spec structure gives the struct, its decoder and its encoder,
//! with fields in wire order, so the three can never disagree.

/// Declares a structure of the UA binary encoding. Each field is `name: one Type` or
/// `name: array Type` (an `Array<Type>`: Int32 count, −1 = null).
macro_rules! ua_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime>)? {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $kind:ident $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name $(<$lt>)? {
            $(
                $(#[$fmeta])*
                pub $field: ua_struct!(@ty $kind $ty),
            )*
        }

        impl<'a> $crate::types::Decode<'a> for $name $(<$lt>)? {
            #[inline]
            fn decode(r: &mut $crate::reader::Reader<'a>) -> Result<Self, $crate::error::DecodeError> {
                Ok($name {
                    $(
                        $field: ua_struct!(@dec $kind $ty, r, stringify!($name), stringify!($field)),
                    )*
                })
            }
        }

        impl $(<$lt>)? $crate::encode::Encode for $name $(<$lt>)? {
            #[allow(unused_variables)]
            fn encoded_len(&self) -> usize {
                0usize $( .saturating_add(ua_struct!(@len $kind self.$field)) )*
            }
            #[allow(unused_variables)]
            fn encode<B: bytes::BufMut>(&self, out: &mut B) {
                $( ua_struct!(@enc $kind self.$field, out); )*
            }
        }
    };
    (@ty one $ty:ty) => { $ty };
    (@ty array $ty:ty) => { $crate::types::Array<$ty> };
    (@dec one $ty:ty, $r:ident, $s:expr, $f:expr) => {
        <$ty as $crate::types::Decode>::decode($r)?
    };
    (@dec array $ty:ty, $r:ident, $s:expr, $f:expr) => {
        $crate::types::decode_array::<$ty>($r, $s, $f, 0)?
    };
    (@len one $e:expr) => { $crate::encode::Encode::encoded_len(&$e) };
    (@len array $e:expr) => { $crate::types::array_encoded_len(&$e) };
    (@enc one $e:expr, $out:ident) => { $crate::encode::Encode::encode(&$e, $out) };
    (@enc array $e:expr, $out:ident) => { $crate::types::encode_array(&$e, $out) };
}

pub(crate) use ua_struct;
