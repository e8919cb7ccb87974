//! Metrics label enums that carry their own exhaustive index.
//!
//! A counter kept per label is an array indexed by the enum's discriminant. Declaring the
//! enum through [`label_enum!`](crate::label_enum) writes its variants, its `ALL` list and
//! its labels from one list, so a new variant gets a slot in every array sized
//! `ALL.len()` and cannot be left without a label or counted in another one's slot.

/// Declares a metrics label enum: `#[repr(u8)]`, variants numbered from 0 in the order
/// written, each with its label.
///
/// It gets `ALL` (every variant, in that order, so `ALL[i] as usize == i`), `label()` and
/// `index()`, and derives `Debug`, `Clone`, `Copy`, `PartialEq`, `Eq` and `Hash`.
///
/// ```
/// tern_proto::label_enum! {
///     /// Which way a datagram went.
///     pub enum Way {
///         /// Toward the peer.
///         ToPeer => "to_peer",
///         /// Toward the client.
///         ToClient => "to_client",
///     }
/// }
/// let mut counts = [0u64; Way::ALL.len()];
/// counts[Way::ToClient.index()] += 1;
/// assert_eq!(Way::ALL.map(Way::label), ["to_peer", "to_client"]);
/// assert_eq!(counts, [0, 1]);
/// ```
#[macro_export]
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident => $label:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order: `ALL[i] as usize == i`.
            pub const ALL: [Self; [$(stringify!($variant)),+].len()] = [$(Self::$variant),+];

            /// The metrics label: a fixed string.
            pub const fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }

            /// The position in [`Self::ALL`], and so in a counter array sized `ALL.len()`.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// Checks what every label enum promises: `ALL[i]` has index `i`, and labels are distinct
/// and non-empty. `all` is `(index, label)` of each entry of an `ALL`.
#[cfg(test)]
pub(crate) fn assert_indexed(all: &[(usize, &str)]) {
    for (i, (index, label)) in all.iter().enumerate() {
        assert_eq!(*index, i, "{label} is not at its index");
        assert!(!label.is_empty(), "entry {i} has an empty label");
        assert!(
            all[..i].iter().all(|(_, l)| l != label),
            "label {label} twice"
        );
    }
}
