//! Chinese personal and organisational identifiers: checksums and a scanner.
//!
//! The same functions generate checksum-valid synthetic identifiers and find leaked ones in
//! outputs, so the reviewer's content rule recognises exactly what the generator produces.
//! A checksum-valid match is strong evidence of a real identifier: random 18-character strings
//! pass the GB 11643 check one time in eleven, and only with a plausible birth date.

/// GB 11643-1999 weights of the first 17 digits of a resident ID number.
const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// GB 11643-1999 check characters, indexed by the weighted sum mod 11.
const RESIDENT_CHECK: &[u8; 11] = b"10X98765432";
/// GB 32100-2015 alphabet (no I, O, Z, S, V).
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// GB 32100-2015 weights of the first 17 characters.
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// The kinds of identifier the scanner finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierKind {
    /// Resident ID number (居民身份证号码), 18 or legacy 15 characters.
    ResidentId,
    /// Unified social credit code (统一社会信用代码).
    Uscc,
    /// Bank card number (Luhn-valid).
    BankCard,
    /// Mainland mobile number.
    Mobile,
    /// E-mail address.
    Email,
}

impl IdentifierKind {
    /// Name as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResidentId => "resident_id",
            Self::Uscc => "uscc",
            Self::BankCard => "bank_card",
            Self::Mobile => "mobile",
            Self::Email => "email",
        }
    }
}

/// One identifier found in a text: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifierMatch {
    /// What was found.
    pub kind: IdentifierKind,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset after the last character.
    pub end: usize,
}

/// The GB 11643 check character for the first 17 digits of a resident ID.
pub fn resident_id_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17.iter().zip(RESIDENT_WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
    Some(RESIDENT_CHECK[(sum % 11) as usize])
}

fn plausible_date(year: u32, month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && (1..=31).contains(&day) && year > 0
}

fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, byte| byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0')))
}

/// Whether `s` is a resident ID number: 18 characters with a valid check character and a
/// plausible birth date, or the legacy 15-digit form with a plausible date.
pub fn is_valid_resident_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.len() {
        18 => {
            let check = bytes[17].to_ascii_uppercase();
            let (Some(year), Some(month), Some(day)) =
                (digits(&bytes[6..10]), digits(&bytes[10..12]), digits(&bytes[12..14]))
            else {
                return false;
            };
            (1900..=2099).contains(&year)
                && plausible_date(year, month, day)
                && resident_id_check_char(&bytes[..17]) == Some(check)
        }
        15 => {
            if !bytes.iter().all(u8::is_ascii_digit) {
                return false;
            }
            let (Some(month), Some(day)) = (digits(&bytes[8..10]), digits(&bytes[10..12])) else { return false };
            plausible_date(1900, month, day)
        }
        _ => false,
    }
}

fn uscc_value(byte: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&c| c == byte.to_ascii_uppercase()).map(|index| index as u32)
}

/// The GB 32100 check character for the first 17 characters of a unified social credit code.
pub fn uscc_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (byte, weight) in first17.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(*byte)? * weight;
    }
    Some(USCC_ALPHABET[((31 - sum % 31) % 31) as usize])
}

/// Whether `s` is a unified social credit code with a valid check character.
pub fn is_valid_uscc(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 18 && uscc_check_char(&bytes[..17]) == Some(bytes[17].to_ascii_uppercase())
}

/// Whether a digit string passes the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The digit that makes `digits` followed by it pass the Luhn check; None unless `digits` is
/// all ASCII digits.
pub fn luhn_check_digit(digits: &str) -> Option<u8> {
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    (b'0'..=b'9').find(|&check| luhn_valid(&format!("{digits}{}", char::from(check))))
}

/// Whether `s` is a bank card number: 13–19 digits passing Luhn.
pub fn is_bank_card(s: &str) -> bool {
    (13..=19).contains(&s.len()) && luhn_valid(s)
}

/// Whether `s` is a mainland mobile number (optionally with +86 or 86).
pub fn is_mobile(s: &str) -> bool {
    let s = s.strip_prefix("+86").or_else(|| s.strip_prefix("86").filter(|rest| rest.len() == 11)).unwrap_or(s);
    let bytes = s.as_bytes();
    bytes.len() == 11 && bytes[0] == b'1' && (b'3'..=b'9').contains(&bytes[1]) && bytes.iter().all(u8::is_ascii_digit)
}

/// Whether `s` looks like an e-mail address (`local@domain.tld`).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    let local_ok =
        !local.is_empty() && local.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"._%+-".contains(&byte));
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-');
    local_ok && domain_ok
}

/// Finds checksum-valid identifiers in free text. Candidates are maximal runs of ASCII
/// letters and digits (so an identifier embedded in Chinese text or punctuation is found,
/// but a window inside a longer number is not); e-mails are whole `@`-tokens.
pub fn find_identifiers(text: &str) -> Vec<IdentifierMatch> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if !bytes[index].is_ascii_alphanumeric() {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_alphanumeric() {
            index += 1;
        }
        // Widen to an e-mail token when the run touches an '@'.
        let mut end = index;
        if end < bytes.len() && bytes[end] == b'@' || start > 0 && bytes[start - 1] == b'@' {
            let mut token_start = start;
            while token_start > 0
                && (bytes[token_start - 1].is_ascii_alphanumeric() || b"._%+-@".contains(&bytes[token_start - 1]))
            {
                token_start -= 1;
            }
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || b"._%+-@".contains(&bytes[end])) {
                end += 1;
            }
            let token = text[token_start..end].trim_end_matches('.');
            if is_email(token) {
                found.push(IdentifierMatch {
                    kind: IdentifierKind::Email,
                    start: token_start,
                    end: token_start + token.len(),
                });
            }
            index = end;
            continue;
        }
        let run = &text[start..end];
        let kind = if is_valid_resident_id(run) {
            Some(IdentifierKind::ResidentId)
        } else if is_valid_uscc(run) {
            Some(IdentifierKind::Uscc)
        } else if is_mobile(run) {
            Some(IdentifierKind::Mobile)
        } else if is_bank_card(run) {
            Some(IdentifierKind::BankCard)
        } else {
            None
        };
        if let Some(kind) = kind {
            found.push(IdentifierMatch { kind, start, end });
        }
    }
    // The same e-mail can be reached from both sides of its '@'.
    found.dedup();
    found
}

/// The exact values of a grant's identifier columns, for finding them copied into outputs.
///
/// Built inside the domain from the stored data and never serialised. Each value is kept as a
/// 64-bit hash in an open-addressing table at most half full — 16 bytes per identifier, one or
/// two memory reads per lookup — and a mask of the value lengths present lets most candidate
/// strings skip the lookup altogether, so the scan stays fast with millions of identifiers. A
/// hash collision can only make an innocent string look like an identifier (the output waits
/// or is blocked), never the reverse. Values are compared trimmed and with ASCII letters
/// upper-cased (`x` and `X` check digits).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifierSet {
    /// Hashes by open addressing (linear probing); 0 marks an empty slot.
    slots: Vec<u64>,
    /// Distinct identifiers held.
    len: usize,
    /// Bit i set: some identifier is i bytes long (bit 63: 63 bytes or more).
    lengths: u64,
}

/// Shortest value the set keeps: shorter ones (`1`, `男`) would match ordinary cells.
pub const MIN_IDENTIFIER_CHARS: usize = 2;

/// FNV-1a over the case-folded bytes; never 0 (0 marks an empty slot).
#[inline]
fn identifier_hash(value: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in value {
        hash ^= u64::from(byte.to_ascii_uppercase());
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Mix the high bits down so that the slot index (low bits) depends on every byte.
    hash ^= hash >> 29;
    hash.max(1)
}

#[inline]
fn length_bit(bytes: usize) -> u64 {
    1u64 << bytes.min(63)
}

impl IdentifierSet {
    /// The set of `values` (values shorter than [`MIN_IDENTIFIER_CHARS`] are left out).
    pub fn from_values<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut hashes = Vec::new();
        let mut lengths = 0u64;
        for value in values {
            let value = value.as_ref().trim();
            if value.chars().count() < MIN_IDENTIFIER_CHARS {
                continue;
            }
            lengths |= length_bit(value.len());
            hashes.push(identifier_hash(value.as_bytes()));
        }
        hashes.sort_unstable();
        hashes.dedup();
        let capacity = (hashes.len() * 2).next_power_of_two().max(16);
        let mut slots = vec![0u64; capacity];
        let mask = capacity - 1;
        for &hash in &hashes {
            let mut slot = hash as usize & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = hash;
        }
        Self { slots, len: hashes.len(), lengths }
    }

    /// Distinct identifiers held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `value` (trimmed, case-folded) is one of the identifiers.
    pub fn contains(&self, value: &str) -> bool {
        let value = value.trim().as_bytes();
        if self.len == 0 || self.lengths & length_bit(value.len()) == 0 {
            return false;
        }
        let hash = identifier_hash(value);
        let mask = self.slots.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            match self.slots[slot] {
                0 => return false,
                held if held == hash => return true,
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// Whether `text` is an identifier as a whole, or holds one as a run of ASCII letters and
    /// digits (`ID:330102199001011234;`).
    pub fn found_in(&self, text: &str) -> bool {
        if self.len == 0 {
            return false;
        }
        if self.contains(text) {
            return true;
        }
        let bytes = text.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            if !bytes[index].is_ascii_alphanumeric() {
                index += 1;
                continue;
            }
            let start = index;
            while index < bytes.len() && bytes[index].is_ascii_alphanumeric() {
                index += 1;
            }
            if (start > 0 || index < bytes.len()) && self.contains(&text[start..index]) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_luhn_check_digit_completes_a_valid_number() {
        assert_eq!(luhn_check_digit("7992739871"), Some(b'3'), "the textbook example 79927398713");
        for prefix in ["62284800000000000", "621700123456789012", "4"] {
            let check = char::from(luhn_check_digit(prefix).unwrap());
            assert!(luhn_valid(&format!("{prefix}{check}")), "{prefix}{check}");
            let wrong = char::from(b'0' + (check as u8 - b'0' + 1) % 10);
            assert!(!luhn_valid(&format!("{prefix}{wrong}")), "{prefix}{wrong}");
        }
        assert_eq!(luhn_check_digit("12a"), None);
    }

    #[test]
    fn identifier_sets_find_whole_and_embedded_values() {
        let set = IdentifierSet::from_values(["张三丰", "p-000123", "11010519491231002x", "1"]);
        assert_eq!(set.len(), 3, "one-character values are left out");
        assert!(set.found_in(" 张三丰 "));
        assert!(set.found_in("11010519491231002X"), "check letters compare case-folded");
        assert!(set.found_in("id=11010519491231002X;"));
        assert!(!set.found_in("张三"));
        assert!(!set.found_in("1"));
        assert!(!IdentifierSet::default().found_in("张三丰"));
    }

    #[test]
    fn the_standards_example_resident_id_is_valid() {
        assert!(is_valid_resident_id("11010519491231002X"));
        assert!(is_valid_resident_id("11010519491231002x"));
        assert!(!is_valid_resident_id("110105194912310021"), "wrong check character");
        assert!(!is_valid_resident_id("11010519491331002X"), "month 13");
        assert_eq!(resident_id_check_char(b"33050219800101001"), Some(b'X'));
        assert!(is_valid_resident_id("33050219800101001X"));
        assert!(is_valid_resident_id("110105491231002"), "legacy 15-digit form");
    }

    #[test]
    fn uscc_check_characters_follow_gb_32100() {
        let first17 = b"91330502MA2B3C4D5";
        let check = uscc_check_char(first17).unwrap();
        let code = format!("{}{}", std::str::from_utf8(first17).unwrap(), check as char);
        assert!(is_valid_uscc(&code));
        let wrong = if check == b'0' { '1' } else { '0' };
        assert!(!is_valid_uscc(&format!("{}{wrong}", std::str::from_utf8(first17).unwrap())));
        assert_eq!(uscc_check_char(b"91330502MA2B3C4DI"), None, "I is not in the alphabet");
    }

    #[test]
    fn luhn_mobiles_and_emails() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(is_bank_card("6222021234567890128") == luhn_valid("6222021234567890128"));
        assert!(is_mobile("13812345678") && is_mobile("+8613812345678"));
        assert!(!is_mobile("12812345678"));
        assert!(is_email("zhang.san@example.com.cn") && !is_email("not-an-email@localhost"));
    }

    #[test]
    fn the_scanner_finds_embedded_identifiers_but_not_plain_numbers() {
        let text = "联系人身份证11010519491231002X，电话13812345678，邮箱 li@example.cn。";
        let kinds: Vec<_> = find_identifiers(text).iter().map(|found| found.kind).collect();
        assert_eq!(kinds, vec![IdentifierKind::ResidentId, IdentifierKind::Mobile, IdentifierKind::Email]);
        let found = &find_identifiers(text)[0];
        assert_eq!(&text[found.start..found.end], "11010519491231002X");
        for plain in ["2025", "123456.75", "total 98231 kWh", "吴兴区,纺织业,1234567.5", "2025-01"] {
            assert!(find_identifiers(plain).is_empty(), "{plain}");
        }
        assert!(find_identifiers("x11010519491231002X9").is_empty(), "part of a longer token");
    }
}
