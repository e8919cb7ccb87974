use std::fmt;

use crate::{attr, WireError, HEADER_LEN, MAGIC_COOKIE};

/// The 96-bit transaction id of a STUN message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransactionId(pub [u8; 12]);

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A STUN method (the 12 method bits of the message type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (RFC 8656 §7).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (RFC 8656 §8).
    pub const REFRESH: Method = Method(0x004);
    /// Send indication (RFC 8656 §11).
    pub const SEND: Method = Method(0x006);
    /// Data indication (RFC 8656 §11).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (RFC 8656 §9).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (RFC 8656 §12).
    pub const CHANNEL_BIND: Method = Method(0x009);

    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::BINDING => "binding",
            Self::ALLOCATE => "allocate",
            Self::REFRESH => "refresh",
            Self::SEND => "send",
            Self::DATA => "data",
            Self::CREATE_PERMISSION => "create_permission",
            Self::CHANNEL_BIND => "channel_bind",
            _ => "other",
        }
    }
}

/// The class of a STUN message (the C1/C0 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request, answered by a success or error response.
    Request,
    /// An indication: no response.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// Method and class, packed into the 14-bit message type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The method.
    pub method: Method,
    /// The class.
    pub class: Class,
}

impl MessageType {
    /// Combines a method and a class.
    pub const fn new(method: Method, class: Class) -> Self {
        Self { method, class }
    }

    /// Encodes as the 16-bit type field (the top two bits zero).
    pub fn to_u16(self) -> u16 {
        let m = self.method.0 & 0x0FFF;
        let c: u16 = match self.class {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        };
        (m & 0x000F) | ((c & 1) << 4) | ((m & 0x0070) << 1) | ((c & 2) << 7) | ((m & 0x0F80) << 2)
    }

    /// Decodes the 16-bit type field; the top two bits are ignored.
    pub fn from_u16(t: u16) -> Self {
        let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
        let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        };
        Self {
            method: Method(method),
            class,
        }
    }
}

/// One attribute as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    /// The attribute type.
    pub typ: u16,
    /// The value, without padding.
    pub value: &'a [u8],
    /// Offset of the attribute's 4-byte header from the start of the message.
    pub offset: usize,
}

/// A validated, zero-copy view of one STUN message.
///
/// `parse` checks the header and that every attribute fits; values are decoded on demand with
/// the helpers in [`attr`]. Following RFC 8489 §14.5, attributes after MESSAGE-INTEGRITY other
/// than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are ignored, and nothing follows FINGERPRINT.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    typ: MessageType,
    /// End of the attributes that count (everything after is ignored).
    attrs_end: usize,
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("type", &self.typ)
            .field("transaction_id", &self.transaction_id())
            .field("len", &self.buf.len())
            .finish()
    }
}

impl<'a> Message<'a> {
    /// Validates `buf` as exactly one STUN message (a UDP datagram).
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::TooShort {
                needed: HEADER_LEN,
                got: buf.len(),
            });
        }
        if buf[0] & 0xC0 != 0 {
            return Err(WireError::NotStun);
        }
        if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
            return Err(WireError::BadMagicCookie);
        }
        let length = u16::from_be_bytes([buf[2], buf[3]]);
        if !length.is_multiple_of(4) {
            return Err(WireError::UnalignedLength { length });
        }
        let total = HEADER_LEN + usize::from(length);
        if total != buf.len() {
            return Err(WireError::LengthMismatch {
                header: total,
                datagram: buf.len(),
            });
        }
        let typ = MessageType::from_u16(u16::from_be_bytes([buf[0], buf[1]]));
        let mut msg = Message {
            buf,
            typ,
            attrs_end: HEADER_LEN,
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        let mut off = HEADER_LEN;
        while off < total {
            if total - off < 4 {
                return Err(WireError::AttributeOverrun {
                    attr_type: 0,
                    offset: off,
                });
            }
            let t = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let len = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
            let padded = (len + 3) & !3;
            if off + 4 + padded > total {
                return Err(WireError::AttributeOverrun {
                    attr_type: t,
                    offset: off,
                });
            }
            let after_integrity = msg.integrity.is_some() || msg.integrity_sha256.is_some();
            match t {
                attr::FINGERPRINT => {
                    if len != 4 {
                        return Err(WireError::BadAttributeLength { attr_type: t, len });
                    }
                    msg.fingerprint = Some(off);
                    if !after_integrity {
                        msg.attrs_end = off;
                    }
                    // Nothing may follow FINGERPRINT; ignore whatever does.
                    break;
                }
                attr::MESSAGE_INTEGRITY if !after_integrity => {
                    if len != 20 {
                        return Err(WireError::BadAttributeLength { attr_type: t, len });
                    }
                    msg.integrity = Some(off);
                    msg.attrs_end = off;
                }
                attr::MESSAGE_INTEGRITY_SHA256 if msg.integrity_sha256.is_none() => {
                    if !(16..=32).contains(&len) || len % 4 != 0 {
                        return Err(WireError::BadAttributeLength { attr_type: t, len });
                    }
                    msg.integrity_sha256 = Some(off);
                    if !after_integrity {
                        msg.attrs_end = off;
                    }
                }
                _ if !after_integrity => msg.attrs_end = off + 4 + padded,
                _ => {}
            }
            off += 4 + padded;
        }
        if msg.integrity.is_none() && msg.integrity_sha256.is_none() && msg.fingerprint.is_none() {
            msg.attrs_end = total;
        }
        Ok(msg)
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Method and class.
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.typ.method
    }

    /// The class.
    pub fn class(&self) -> Class {
        self.typ.class
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        let mut t = [0u8; 12];
        t.copy_from_slice(&self.buf[8..20]);
        TransactionId(t)
    }

    /// The attributes that count: those before MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.
    pub fn attributes(&self) -> AttrIter<'a> {
        AttrIter {
            buf: self.buf,
            off: HEADER_LEN,
            end: self.attrs_end,
        }
    }

    /// The first attribute of type `typ` among those that count, or the integrity and
    /// fingerprint attributes themselves.
    pub fn get(&self, typ: u16) -> Option<RawAttr<'a>> {
        let at = match typ {
            attr::MESSAGE_INTEGRITY => self.integrity,
            attr::MESSAGE_INTEGRITY_SHA256 => self.integrity_sha256,
            attr::FINGERPRINT => self.fingerprint,
            _ => return self.attributes().find(|a| a.typ == typ),
        }?;
        Some(raw_at(self.buf, at))
    }

    /// Offset of MESSAGE-INTEGRITY, if present.
    pub fn integrity_offset(&self) -> Option<usize> {
        self.integrity
    }

    /// Offset of MESSAGE-INTEGRITY-SHA256, if present.
    pub fn integrity_sha256_offset(&self) -> Option<usize> {
        self.integrity_sha256
    }

    /// `Some(valid)` if the message carries FINGERPRINT, `None` otherwise.
    pub fn check_fingerprint(&self) -> Option<bool> {
        let at = self.fingerprint?;
        let expected = crate::integrity::fingerprint_over(self.buf, at);
        let got = u32::from_be_bytes([
            self.buf[at + 4],
            self.buf[at + 5],
            self.buf[at + 6],
            self.buf[at + 7],
        ]);
        Some(expected == got)
    }
}

fn raw_at(buf: &[u8], off: usize) -> RawAttr<'_> {
    let typ = u16::from_be_bytes([buf[off], buf[off + 1]]);
    let len = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
    RawAttr {
        typ,
        value: &buf[off + 4..off + 4 + len],
        offset: off,
    }
}

/// Iterator over the attributes of a parsed [`Message`].
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    buf: &'a [u8],
    off: usize,
    end: usize,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = RawAttr<'a>;

    fn next(&mut self) -> Option<RawAttr<'a>> {
        if self.off >= self.end {
            return None;
        }
        let a = raw_at(self.buf, self.off);
        self.off += 4 + ((a.value.len() + 3) & !3);
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSES: [Class; 4] = [
        Class::Request,
        Class::Indication,
        Class::Success,
        Class::Error,
    ];

    #[test]
    fn message_types_have_their_rfc_wire_values() {
        let known = [
            (Method::BINDING, Class::Request, 0x0001),
            (Method::BINDING, Class::Success, 0x0101),
            (Method::BINDING, Class::Error, 0x0111),
            (Method::BINDING, Class::Indication, 0x0011),
            (Method::ALLOCATE, Class::Request, 0x0003),
            (Method::ALLOCATE, Class::Success, 0x0103),
            (Method::ALLOCATE, Class::Error, 0x0113),
            (Method::REFRESH, Class::Request, 0x0004),
            (Method::SEND, Class::Indication, 0x0016),
            (Method::DATA, Class::Indication, 0x0017),
            (Method::CREATE_PERMISSION, Class::Request, 0x0008),
            (Method::CHANNEL_BIND, Class::Request, 0x0009),
            (Method::CHANNEL_BIND, Class::Success, 0x0109),
            // The highest method: every method bit set, interleaved around C0 and C1.
            (Method(0x0FFF), Class::Request, 0x3EEF),
            (Method(0x0FFF), Class::Error, 0x3FFF),
        ];
        for (method, class, wire) in known {
            let typ = MessageType::new(method, class);
            assert_eq!(typ.to_u16(), wire, "{method:?} {class:?}");
            assert_eq!(MessageType::from_u16(wire), typ, "{wire:#06x}");
        }
    }

    #[test]
    fn every_method_and_class_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for m in 0..=0x0FFFu16 {
            for class in CLASSES {
                let typ = MessageType::new(Method(m), class);
                let wire = typ.to_u16();
                assert_eq!(wire & 0xC000, 0, "top two bits must stay zero: {wire:#06x}");
                assert_eq!(MessageType::from_u16(wire), typ);
                // The top two bits belong to the STUN/ChannelData demultiplexing, not the type.
                assert_eq!(MessageType::from_u16(wire | 0xC000), typ);
                assert!(seen.insert(wire), "{wire:#06x} produced twice");
            }
        }
        // 4096 methods x 4 classes fill the 14-bit type space exactly.
        assert_eq!(seen.len(), 0x4000);
    }
}
