//! StatusCode (OPC 10000-4 §7.39): an open newtype over the UInt32, with the spec names.

use std::fmt;

/// An OPC UA StatusCode as written on the wire; unknown values are kept and shown in hex.
///
/// Look-ups use `code & 0xFFFF0000`: the low 16 bits are info flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StatusCode(pub u32);

macro_rules! status_codes {
    ($($konst:ident = $value:expr, $name:expr;)*) => {
        impl StatusCode {
            $(
                #[doc = concat!("`", $name, "`")]
                pub const $konst: StatusCode = StatusCode($value);
            )*
        }

        /// Every named code, sorted by value, for look-up by binary search.
        static NAMES: &[(u32, &str)] = &[$(($value, $name),)*];
    };
}

status_codes! {
    GOOD = 0x00000000, "Good";
    GOOD_SUBSCRIPTION_TRANSFERRED = 0x002D0000, "Good_SubscriptionTransferred";
    GOOD_RETRANSMISSION_QUEUE_NOT_SUPPORTED = 0x00DF0000, "Good_RetransmissionQueueNotSupported";
    GOOD_PASSWORD_CHANGE_REQUIRED = 0x00EF0000, "Good_PasswordChangeRequired";
    UNCERTAIN = 0x40000000, "Uncertain";
    UNCERTAIN_NO_COMMUNICATION_LAST_USABLE_VALUE = 0x408F0000, "Uncertain_NoCommunicationLastUsableValue";
    UNCERTAIN_LAST_USABLE_VALUE = 0x40900000, "Uncertain_LastUsableValue";
    BAD = 0x80000000, "Bad";
    BAD_UNEXPECTED_ERROR = 0x80010000, "Bad_UnexpectedError";
    BAD_INTERNAL_ERROR = 0x80020000, "Bad_InternalError";
    BAD_OUT_OF_MEMORY = 0x80030000, "Bad_OutOfMemory";
    BAD_COMMUNICATION_ERROR = 0x80050000, "Bad_CommunicationError";
    BAD_ENCODING_ERROR = 0x80060000, "Bad_EncodingError";
    BAD_DECODING_ERROR = 0x80070000, "Bad_DecodingError";
    BAD_ENCODING_LIMITS_EXCEEDED = 0x80080000, "Bad_EncodingLimitsExceeded";
    BAD_TIMEOUT = 0x800A0000, "Bad_Timeout";
    BAD_SERVICE_UNSUPPORTED = 0x800B0000, "Bad_ServiceUnsupported";
    BAD_SHUTDOWN = 0x800C0000, "Bad_Shutdown";
    BAD_SERVER_NOT_CONNECTED = 0x800D0000, "Bad_ServerNotConnected";
    BAD_SERVER_HALTED = 0x800E0000, "Bad_ServerHalted";
    BAD_NOTHING_TO_DO = 0x800F0000, "Bad_NothingToDo";
    BAD_TOO_MANY_OPERATIONS = 0x80100000, "Bad_TooManyOperations";
    BAD_DATA_TYPE_ID_UNKNOWN = 0x80110000, "Bad_DataTypeIdUnknown";
    BAD_CERTIFICATE_INVALID = 0x80120000, "Bad_CertificateInvalid";
    BAD_SECURITY_CHECKS_FAILED = 0x80130000, "Bad_SecurityChecksFailed";
    BAD_CERTIFICATE_TIME_INVALID = 0x80140000, "Bad_CertificateTimeInvalid";
    BAD_CERTIFICATE_ISSUER_TIME_INVALID = 0x80150000, "Bad_CertificateIssuerTimeInvalid";
    BAD_CERTIFICATE_HOST_NAME_INVALID = 0x80160000, "Bad_CertificateHostNameInvalid";
    BAD_CERTIFICATE_URI_INVALID = 0x80170000, "Bad_CertificateUriInvalid";
    BAD_CERTIFICATE_USE_NOT_ALLOWED = 0x80180000, "Bad_CertificateUseNotAllowed";
    BAD_CERTIFICATE_ISSUER_USE_NOT_ALLOWED = 0x80190000, "Bad_CertificateIssuerUseNotAllowed";
    BAD_CERTIFICATE_UNTRUSTED = 0x801A0000, "Bad_CertificateUntrusted";
    BAD_CERTIFICATE_REVOCATION_UNKNOWN = 0x801B0000, "Bad_CertificateRevocationUnknown";
    BAD_CERTIFICATE_ISSUER_REVOCATION_UNKNOWN = 0x801C0000, "Bad_CertificateIssuerRevocationUnknown";
    BAD_CERTIFICATE_REVOKED = 0x801D0000, "Bad_CertificateRevoked";
    BAD_CERTIFICATE_ISSUER_REVOKED = 0x801E0000, "Bad_CertificateIssuerRevoked";
    BAD_USER_ACCESS_DENIED = 0x801F0000, "Bad_UserAccessDenied";
    BAD_IDENTITY_TOKEN_INVALID = 0x80200000, "Bad_IdentityTokenInvalid";
    BAD_IDENTITY_TOKEN_REJECTED = 0x80210000, "Bad_IdentityTokenRejected";
    BAD_SECURE_CHANNEL_ID_INVALID = 0x80220000, "Bad_SecureChannelIdInvalid";
    BAD_INVALID_TIMESTAMP = 0x80230000, "Bad_InvalidTimestamp";
    BAD_NONCE_INVALID = 0x80240000, "Bad_NonceInvalid";
    BAD_SESSION_ID_INVALID = 0x80250000, "Bad_SessionIdInvalid";
    BAD_SESSION_CLOSED = 0x80260000, "Bad_SessionClosed";
    BAD_SESSION_NOT_ACTIVATED = 0x80270000, "Bad_SessionNotActivated";
    BAD_SUBSCRIPTION_ID_INVALID = 0x80280000, "Bad_SubscriptionIdInvalid";
    BAD_REQUEST_CANCELLED_BY_CLIENT = 0x802C0000, "Bad_RequestCancelledByClient";
    BAD_NO_COMMUNICATION = 0x80310000, "Bad_NoCommunication";
    BAD_WAITING_FOR_INITIAL_DATA = 0x80320000, "Bad_WaitingForInitialData";
    BAD_NODE_ID_INVALID = 0x80330000, "Bad_NodeIdInvalid";
    BAD_NODE_ID_UNKNOWN = 0x80340000, "Bad_NodeIdUnknown";
    BAD_ATTRIBUTE_ID_INVALID = 0x80350000, "Bad_AttributeIdInvalid";
    BAD_INDEX_RANGE_INVALID = 0x80360000, "Bad_IndexRangeInvalid";
    BAD_NOT_READABLE = 0x803A0000, "Bad_NotReadable";
    BAD_NOT_WRITABLE = 0x803B0000, "Bad_NotWritable";
    BAD_NOT_SUPPORTED = 0x803D0000, "Bad_NotSupported";
    BAD_NOT_IMPLEMENTED = 0x80400000, "Bad_NotImplemented";
    BAD_MONITORING_MODE_INVALID = 0x80410000, "Bad_MonitoringModeInvalid";
    BAD_MONITORED_ITEM_ID_INVALID = 0x80420000, "Bad_MonitoredItemIdInvalid";
    BAD_SERVER_URI_INVALID = 0x804F0000, "Bad_ServerUriInvalid";
    BAD_REQUEST_TYPE_INVALID = 0x80530000, "Bad_RequestTypeInvalid";
    BAD_SECURITY_MODE_REJECTED = 0x80540000, "Bad_SecurityModeRejected";
    BAD_SECURITY_POLICY_REJECTED = 0x80550000, "Bad_SecurityPolicyRejected";
    BAD_TOO_MANY_SESSIONS = 0x80560000, "Bad_TooManySessions";
    BAD_USER_SIGNATURE_INVALID = 0x80570000, "Bad_UserSignatureInvalid";
    BAD_APPLICATION_SIGNATURE_INVALID = 0x80580000, "Bad_ApplicationSignatureInvalid";
    BAD_NO_VALID_CERTIFICATES = 0x80590000, "Bad_NoValidCertificates";
    BAD_TYPE_MISMATCH = 0x80740000, "Bad_TypeMismatch";
    BAD_METHOD_INVALID = 0x80750000, "Bad_MethodInvalid";
    BAD_ARGUMENTS_MISSING = 0x80760000, "Bad_ArgumentsMissing";
    BAD_TOO_MANY_SUBSCRIPTIONS = 0x80770000, "Bad_TooManySubscriptions";
    BAD_TOO_MANY_PUBLISH_REQUESTS = 0x80780000, "Bad_TooManyPublishRequests";
    BAD_NO_SUBSCRIPTION = 0x80790000, "Bad_NoSubscription";
    BAD_SEQUENCE_NUMBER_UNKNOWN = 0x807A0000, "Bad_SequenceNumberUnknown";
    BAD_MESSAGE_NOT_AVAILABLE = 0x807B0000, "Bad_MessageNotAvailable";
    BAD_TCP_SERVER_TOO_BUSY = 0x807D0000, "Bad_TcpServerTooBusy";
    BAD_TCP_MESSAGE_TYPE_INVALID = 0x807E0000, "Bad_TcpMessageTypeInvalid";
    BAD_TCP_SECURE_CHANNEL_UNKNOWN = 0x807F0000, "Bad_TcpSecureChannelUnknown";
    BAD_TCP_MESSAGE_TOO_LARGE = 0x80800000, "Bad_TcpMessageTooLarge";
    BAD_TCP_NOT_ENOUGH_RESOURCES = 0x80810000, "Bad_TcpNotEnoughResources";
    BAD_TCP_INTERNAL_ERROR = 0x80820000, "Bad_TcpInternalError";
    BAD_TCP_ENDPOINT_URL_INVALID = 0x80830000, "Bad_TcpEndpointUrlInvalid";
    BAD_REQUEST_INTERRUPTED = 0x80840000, "Bad_RequestInterrupted";
    BAD_REQUEST_TIMEOUT = 0x80850000, "Bad_RequestTimeout";
    BAD_SECURE_CHANNEL_CLOSED = 0x80860000, "Bad_SecureChannelClosed";
    BAD_SECURE_CHANNEL_TOKEN_UNKNOWN = 0x80870000, "Bad_SecureChannelTokenUnknown";
    BAD_SEQUENCE_NUMBER_INVALID = 0x80880000, "Bad_SequenceNumberInvalid";
    BAD_CONFIGURATION_ERROR = 0x80890000, "Bad_ConfigurationError";
    BAD_NOT_CONNECTED = 0x808A0000, "Bad_NotConnected";
    BAD_DEVICE_FAILURE = 0x808B0000, "Bad_DeviceFailure";
    BAD_SENSOR_FAILURE = 0x808C0000, "Bad_SensorFailure";
    BAD_OUT_OF_SERVICE = 0x808D0000, "Bad_OutOfService";
    BAD_NO_DATA = 0x809B0000, "Bad_NoData";
    BAD_CONNECTION_REJECTED = 0x80AC0000, "Bad_ConnectionRejected";
    BAD_DISCONNECT = 0x80AD0000, "Bad_Disconnect";
    BAD_CONNECTION_CLOSED = 0x80AE0000, "Bad_ConnectionClosed";
    BAD_INVALID_STATE = 0x80AF0000, "Bad_InvalidState";
    BAD_MAX_CONNECTIONS_REACHED = 0x80B70000, "Bad_MaxConnectionsReached";
    BAD_REQUEST_TOO_LARGE = 0x80B80000, "Bad_RequestTooLarge";
    BAD_RESPONSE_TOO_LARGE = 0x80B90000, "Bad_ResponseTooLarge";
    BAD_PROTOCOL_VERSION_UNSUPPORTED = 0x80BE0000, "Bad_ProtocolVersionUnsupported";
    BAD_IDENTITY_CHANGE_NOT_SUPPORTED = 0x80C60000, "Bad_IdentityChangeNotSupported";
    BAD_TOO_MANY_MONITORED_ITEMS = 0x80DB0000, "Bad_TooManyMonitoredItems";
    BAD_SECURITY_MODE_INSUFFICIENT = 0x80E60000, "Bad_SecurityModeInsufficient";
    BAD_CERTIFICATE_CHAIN_INCOMPLETE = 0x810D0000, "Bad_CertificateChainIncomplete";
    BAD_CERTIFICATE_POLICY_CHECK_FAILED = 0x81140000, "Bad_CertificatePolicyCheckFailed";
}

/// The severity class of a StatusCode (bits 31–30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// 00: the operation succeeded.
    Good,
    /// 01: the value is uncertain.
    Uncertain,
    /// 10 (and the reserved 11, treated as Bad).
    Bad,
}

impl StatusCode {
    /// The spec name of the code (info bits ignored), or `None` for a code not in the table.
    pub fn name(self) -> Option<&'static str> {
        let key = self.0 & 0xFFFF_0000;
        NAMES
            .binary_search_by_key(&key, |(v, _)| *v)
            .ok()
            .and_then(|i| NAMES.get(i))
            .map(|(_, n)| *n)
    }

    /// Severity from bits 31–30; the reserved value 11 counts as Bad, as open62541 does.
    pub fn severity(self) -> Severity {
        match self.0 >> 30 {
            0 => Severity::Good,
            1 => Severity::Uncertain,
            _ => Severity::Bad,
        }
    }

    /// True for Good codes.
    pub fn is_good(self) -> bool {
        self.severity() == Severity::Good
    }

    /// True for Bad codes.
    pub fn is_bad(self) -> bool {
        self.severity() == Severity::Bad
    }

    /// The code as the event stream writes it, e.g. `0x80AC0000`.
    pub fn hex(self) -> String {
        let mut s = String::with_capacity(10);
        self.push_hex(&mut s);
        s
    }

    /// Appends [`hex`](Self::hex) to `out` without a formatter (event writers do this for
    /// every response).
    pub fn push_hex(self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        out.push_str("0x");
        let mut v = self.0;
        for _ in 0..8 {
            v = v.rotate_left(4);
            let d = DIGITS.get((v & 0xF) as usize).copied().unwrap_or(b'0');
            out.push(char::from(d));
        }
    }

    /// Appends the [`Display`](fmt::Display) form to `out`, without a formatter for the usual
    /// case of a named code.
    pub fn push_display(self, out: &mut String) {
        match self.name() {
            Some(n) if self.0 & 0xFFFF == 0 => out.push_str(n),
            Some(n) => {
                out.push_str(n);
                out.push_str(" (");
                self.push_hex(out);
                out.push(')');
            }
            None => self.push_hex(out),
        }
    }

    /// Every named code, sorted by value.
    pub fn all_named() -> &'static [(u32, &'static str)] {
        NAMES
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) if self.0 & 0xFFFF == 0 => f.write_str(n),
            Some(n) => write!(f, "{n} (0x{:08X})", self.0),
            None => write!(f, "0x{:08X}", self.0),
        }
    }
}

impl From<u32> for StatusCode {
    fn from(v: u32) -> Self {
        StatusCode(v)
    }
}

impl<'a> crate::types::Decode<'a> for StatusCode {
    const MIN_ENCODED_LEN: usize = 4;
    #[inline]
    fn decode(r: &mut crate::reader::Reader<'a>) -> Result<Self, crate::error::DecodeError> {
        r.read_u32("StatusCode").map(StatusCode)
    }
}

impl crate::encode::Encode for StatusCode {
    fn encoded_len(&self) -> usize {
        4
    }
    fn encode<B: bytes::BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(NAMES.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)));
    }

    #[test]
    fn names_and_severity() {
        assert_eq!(StatusCode::BAD_CONNECTION_REJECTED.0, 0x80AC_0000);
        assert_eq!(
            StatusCode(0x80AC_0000).name(),
            Some("Bad_ConnectionRejected")
        );
        assert_eq!(StatusCode(0x8079_0000).to_string(), "Bad_NoSubscription");
        assert_eq!(StatusCode(0x0000_0400).name(), Some("Good"));
        assert_eq!(StatusCode(0x8123_0000).name(), None);
        assert_eq!(StatusCode(0x8123_0000).to_string(), "0x81230000");
        assert_eq!(StatusCode(0xC000_0000).severity(), Severity::Bad);
        assert_eq!(StatusCode(0x4090_0000).severity(), Severity::Uncertain);
        assert_eq!(StatusCode::BAD_TCP_SERVER_TOO_BUSY.hex(), "0x807D0000");
    }
}
