//! Chinese personal and organisational identifiers: checksums, a scanner that sees through
//! simple disguises, and the set of a grant's identifier values.
//!
//! The same functions generate checksum-valid synthetic identifiers and find leaked ones in
//! outputs, so the reviewer's content rule recognises exactly what the generator produces.
//! A checksum-valid match is strong evidence of a real identifier: random 18-digit strings
//! pass the GB 11643 check one time in eleven, and only with a plausible region and birth date
//! (about one in 3,700 of those).
//!
//! # What the scanner normalises
//!
//! A module that wants identifiers out disguises them; the scanner undoes the cheap disguises
//! and lets the check digits decide, so that disguised and plain identifiers are found alike
//! while ordinary cells stay quiet:
//!
//! - **width**: full-width digits, letters and punctuation (`３３０５０２`, `＠`) read as ASCII;
//! - **case**: letters compare upper-cased (`x` check characters, lower-case credit codes,
//!   upper-case e-mails);
//! - **separators**: whitespace, `-`, `.`, `/`, `_`, the dashes and middle dots of Unicode and
//!   zero-width characters between letters and digits are dropped, and a candidate may start
//!   or end where one stood (`330502-1980-0101-1234`, `138 1234 5678`, `13812345678.0`);
//! - **concatenation**: resident ID numbers are looked for at every position of a run of
//!   digits (`9330502198001011234x`, `id:330502…;`); the checks without a strong checksum
//!   (mobiles, bank cards, legacy 15-digit IDs) and credit codes start and end where the text
//!   changes between letters and digits, at a separator or at other punctuation, so a window
//!   inside a longer number is not taken for one;
//! - **substitution**: digits written as letters (`a`–`j` or `A`–`J` for 0–9, what SQL
//!   `translate(id, '0123456789', 'abcdefghij')` produces) and the look-alikes `O`/`o` for 0 and
//!   `I`/`i`/`l`/`L` for 1 are read back as digits, each in a pass of its own, for the
//!   identifiers made of digits (credit codes contain letters and are read as written).
//!
//! Numbers are judged by their digits: an integral value (a float with `.0`, a decimal whose
//! fraction is zero) of 11 or more digits is checked like a string of its digits, and a float
//! too large to hold every digit of its integer (from 2⁵³) stands for each integer that rounds
//! to it. Numbers with a fraction are not judged: averages and amounts would otherwise be
//! taken for cards and mobiles.

/// GB 11643-1999 weights of the first 17 digits of a resident ID number.
const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// GB 11643-1999 check characters, indexed by the weighted sum mod 11.
const RESIDENT_CHECK: &[u8; 11] = b"10X98765432";
/// GB 32100-2015 alphabet (no I, O, Z, S, V).
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// GB 32100-2015 weights of the first 17 characters.
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
/// GB 32100-2015 registration authorities (the first character of a credit code).
const USCC_AUTHORITIES: &[u8] = b"123456789ANY";
/// The shortest identifier made of digits: a mobile number.
const MOBILE_DIGITS: usize = 11;
/// Smallest number that can be a mobile (13x…): integers below it are never identifiers.
const SMALLEST_MOBILE: u128 = 13_000_000_000;
/// Numbers of fewer digits are not compared with a grant's identifier values: counts and sums
/// of that size too often equal some short key by chance.
pub const MIN_NUMBER_DIGITS_COMPARED: usize = 9;
/// 10^(MIN_NUMBER_DIGITS_COMPARED − 1): the smallest number compared with identifier values.
const SMALLEST_COMPARED: u128 = 100_000_000;

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
    /// Every kind, in report order.
    pub const ALL: [Self; 5] = [Self::ResidentId, Self::Uscc, Self::BankCard, Self::Mobile, Self::Email];

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

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One identifier found in a text: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdentifierMatch {
    /// What was found.
    pub kind: IdentifierKind,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset after the last character.
    pub end: usize,
}

/// What one cell holds: the kinds of identifier found in it and whether it holds a value of
/// the grant's identifier columns — a cell's verdict in one byte, so a column's verdicts cost
/// one byte per cell and nested cells combine theirs with `|`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finds(u8);

impl Finds {
    const GRANTED: u8 = 1 << 7;

    /// Nothing found.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `kind` was found.
    pub fn has(self, kind: IdentifierKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The kinds found, in report order.
    pub fn kinds(self) -> impl Iterator<Item = IdentifierKind> {
        IdentifierKind::ALL.into_iter().filter(move |kind| self.has(*kind))
    }

    /// Whether a value of the grant's identifier columns was found.
    pub fn granted_value(self) -> bool {
        self.0 & Self::GRANTED != 0
    }

    /// These finds and `kind`.
    pub fn with(self, kind: IdentifierKind) -> Self {
        Self(self.0 | kind.bit())
    }

    /// These finds and a granted value.
    pub fn with_granted_value(self) -> Self {
        Self(self.0 | Self::GRANTED)
    }
}

impl std::ops::BitOr for Finds {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Finds {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

/// The GB 11643 check character for the first 17 digits of a resident ID.
pub fn resident_id_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17.iter().zip(RESIDENT_WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
    Some(RESIDENT_CHECK[(sum % 11) as usize])
}

/// Whether two digits open a region code of GB/T 2260 (provinces 11–82, and 83 for residence
/// permits of Taiwan residents), or 91–96: a foreigner's permanent residence ID (2023) is 9
/// followed by the issuing province's code.
fn plausible_region(first: u8, second: u8) -> bool {
    matches!(
        (first, second),
        (b'1', b'1'..=b'5')
            | (b'2', b'1'..=b'3')
            | (b'3', b'1'..=b'7')
            | (b'4', b'1'..=b'6')
            | (b'5', b'0'..=b'4')
            | (b'6', b'1'..=b'5')
            | (b'7', b'1')
            | (b'8', b'1'..=b'3')
            | (b'9', b'1'..=b'6')
    )
}

fn digits_value(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, byte| byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whether `year`, `month` and `day` (as digits) name a real date.
fn plausible_date(year: u32, month: &[u8], day: &[u8]) -> bool {
    let (Some(month), Some(day)) = (digits_value(month), digits_value(day)) else { return false };
    (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day)
}

/// An 18-character resident ID: region, birth date (1900–2099) and check character.
fn resident_id_bytes_valid(id: &[u8]) -> bool {
    if id.len() != 18 || !plausible_region(id[0], id[1]) {
        return false;
    }
    let Some(year) = digits_value(&id[6..10]) else { return false };
    (1900..=2099).contains(&year)
        && plausible_date(year, &id[10..12], &id[12..14])
        && resident_id_check_char(&id[..17]) == Some(id[17].to_ascii_uppercase())
}

/// 17 or 18 digits whose region and birth date are those of a resident ID, whatever the
/// check digit (or without it).
fn resident_id_shaped(id: &[u8]) -> bool {
    (17..=18).contains(&id.len())
        && plausible_region(id[0], id[1])
        && digits_value(&id[6..10])
            .is_some_and(|year| (1900..=2099).contains(&year) && plausible_date(year, &id[10..12], &id[12..14]))
}

/// A legacy 15-digit resident ID (issued until 2004): region and a plausible `yymmdd`.
fn legacy_resident_id_valid(id: &[u8]) -> bool {
    id.len() == 15
        && id.iter().all(u8::is_ascii_digit)
        && plausible_region(id[0], id[1])
        && plausible_date(1904, &id[8..10], &id[10..12])
}

/// Whether `s` is a resident ID number: 18 characters with a plausible region, a birth date
/// between 1900 and 2099 and a valid check character, or the legacy 15-digit form with a
/// plausible region and date.
pub fn is_valid_resident_id(s: &str) -> bool {
    resident_id_bytes_valid(s.as_bytes()) || legacy_resident_id_valid(s.as_bytes())
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

/// A credit code: registration authority, a category digit, a region code and the check.
fn uscc_bytes_valid(code: &[u8]) -> bool {
    code.len() == 18
        && USCC_AUTHORITIES.contains(&code[0].to_ascii_uppercase())
        && (b'1'..=b'9').contains(&code[1])
        && code[2..8].iter().all(u8::is_ascii_digit)
        && plausible_region(code[2], code[3])
        && uscc_check_char(&code[..17]) == Some(code[17].to_ascii_uppercase())
}

/// Whether `s` is a unified social credit code: a registration authority (`1`–`9`, `A`, `N`,
/// `Y`), a category digit, a six-digit region code and a valid check character.
pub fn is_valid_uscc(s: &str) -> bool {
    uscc_bytes_valid(s.as_bytes())
}

fn luhn_bytes(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
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

/// Whether a digit string passes the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    luhn_bytes(digits.as_bytes())
}

/// The digit that makes `digits` followed by it pass the Luhn check; None unless `digits` is
/// all ASCII digits.
pub fn luhn_check_digit(digits: &str) -> Option<u8> {
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    // The check digit is not doubled; the payload's last digit is.
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    Some(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// 16–19 digits opening with an issuer digit of banking (ISO/IEC 7812: 3–6, and 9 for
/// national use) and passing Luhn — but not 17 or 18 digits shaped like a resident ID.
fn bank_card_bytes(digits: &[u8]) -> bool {
    (16..=19).contains(&digits.len())
        && matches!(digits[0], b'3'..=b'6' | b'9')
        && luhn_bytes(digits)
        && !resident_id_shaped(digits)
}

/// Whether `s` is a bank card number: 16–19 digits (the lengths of UnionPay and Chinese banks'
/// cards; shorter Luhn-valid numbers are too common — 13-digit millisecond timestamps pass one
/// time in ten) opening with a banking issuer digit (3–6 or 9) and passing Luhn. Seventeen or
/// eighteen digits with the region and birth date of a resident ID are taken for a mistyped or
/// truncated ID, not a card.
pub fn is_bank_card(s: &str) -> bool {
    bank_card_bytes(s.as_bytes())
}

/// Whether three digits open a mainland mobile number: the 13x–19x networks as allocated
/// (130–139, 145–149, 150–153, 155–159, 162, 165–167, 170–178, 180–189, 190–193, 195–199).
fn mobile_prefix(prefix: &[u8]) -> bool {
    matches!(
        prefix,
        [b'1', b'3' | b'8', b'0'..=b'9']
            | [b'1', b'4', b'5'..=b'9']
            | [b'1', b'5', b'0'..=b'3' | b'5'..=b'9']
            | [b'1', b'6', b'2' | b'5'..=b'7']
            | [b'1', b'7', b'0'..=b'8']
            | [b'1', b'9', b'0'..=b'3' | b'5'..=b'9']
    )
}

fn mobile_bytes(digits: &[u8]) -> bool {
    digits.len() == MOBILE_DIGITS && mobile_prefix(&digits[..3]) && digits.iter().all(u8::is_ascii_digit)
}

/// Whether `s` is a mainland mobile number (optionally with +86 or 86), by the prefixes of
/// the networks as allocated.
pub fn is_mobile(s: &str) -> bool {
    let s = s.strip_prefix("+86").or_else(|| s.strip_prefix("86").filter(|rest| rest.len() == 11)).unwrap_or(s);
    mobile_bytes(s.as_bytes())
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

/// What an ASCII byte is to the scanner.
const ASCII_OTHER: u8 = 0;
const ASCII_ALNUM: u8 = 1;
const ASCII_SEPARATOR: u8 = 2;
const ASCII_PUNCTUATION: u8 = 3;

/// [`ASCII_OTHER`], [`ASCII_ALNUM`], [`ASCII_SEPARATOR`] (whitespace, `-`, `.`, `/`, `_`) or
/// [`ASCII_PUNCTUATION`] (the rest of ASCII punctuation), by byte; non-ASCII bytes are other.
const ASCII_CLASS: [u8; 256] = {
    let mut classes = [ASCII_OTHER; 256];
    let mut byte = 0;
    while byte < 128 {
        let b = byte as u8;
        classes[byte] = if b.is_ascii_alphanumeric() {
            ASCII_ALNUM
        } else if b.is_ascii_whitespace() || b == 0x0B || matches!(b, b'-' | b'.' | b'/' | b'_') {
            ASCII_SEPARATOR
        } else if b.is_ascii_punctuation() {
            ASCII_PUNCTUATION
        } else {
            ASCII_OTHER
        };
        byte += 1;
    }
    classes
};

/// Full-width forms (U+FF01–FF5E) and the ideographic space read as their ASCII twins.
fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

/// Characters a module can put between the digits of an identifier without changing what a
/// reader sees: whitespace, `-`, `.`, `/`, `_`, Unicode dashes and middle dots, the minus sign,
/// the soft hyphen and zero-width characters.
fn is_soft_separator(c: char) -> bool {
    matches!(
        c,
        '-' | '.'
            | '/'
            | '_'
            | '\u{00AD}'
            | '\u{00B7}'
            | '\u{2010}'..='\u{2015}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{2212}'
            | '\u{30FB}'
            | '\u{FEFF}'
            | '\u{FF65}'
    ) || c.is_whitespace()
}

/// Characters left out when a grant's identifier values are compared: whitespace and
/// punctuation, ASCII and CJK, and the soft separators. Where one stood, a value may begin or
/// end.
fn is_ignorable(c: char) -> bool {
    c.is_ascii_punctuation()
        || is_soft_separator(c)
        || matches!(c, '\u{2016}'..='\u{206F}' | '\u{3001}'..='\u{303F}' | '\u{FE10}'..='\u{FE1F}' | '\u{FE30}'..='\u{FE4F}' | '\u{FF5F}'..='\u{FF64}')
}

/// A letter read as a digit: `A`–`J` for 0–9 (upper-cased input).
fn letter_digit(byte: u8) -> Option<u8> {
    matches!(byte, b'A'..=b'J').then(|| byte - b'A' + b'0')
}

/// A look-alike read as a digit: `O` for 0, `I` and `L` for 1 (upper-cased input).
fn lookalike_digit(byte: u8) -> Option<u8> {
    match byte {
        b'O' => Some(b'0'),
        b'I' | b'L' => Some(b'1'),
        _ => None,
    }
}

/// The decimal digits of `value`, most significant first.
fn decimal_digits(mut value: u128, buffer: &mut [u8; 40]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buffer[start..]
}

/// Checks one normalised run of ASCII letters and digits (upper case) for identifiers of
/// digits and, when `with_uscc`, for credit codes; `separated[i]` says a separator stood
/// before byte `i`. Reports each find with its byte range in `s`.
fn check_run(s: &[u8], separated: &[bool], with_uscc: bool, found: &mut impl FnMut(IdentifierKind, usize, usize)) {
    let n = s.len();
    let separated_at = |position: usize| separated.get(position).copied().unwrap_or(false);
    let mut start = 0;
    while start < n {
        if !s[start].is_ascii_digit() {
            start += 1;
            continue;
        }
        let mut end = start + 1;
        while end < n && s[end].is_ascii_digit() {
            end += 1;
        }
        let digits = end - start;
        // Resident IDs anywhere in the digits: region, date and checksum confirm them. Their
        // spans (the first few) are remembered so that a mobile or card read out of an ID's
        // own digits is not counted beside it.
        let mut ids = [(0usize, 0usize); 4];
        let mut id_count = 0;
        let mut resident = |at: usize, found: &mut dyn FnMut(IdentifierKind, usize, usize)| {
            found(IdentifierKind::ResidentId, at, at + 18);
            if id_count < ids.len() {
                ids[id_count] = (at, at + 18);
                id_count += 1;
            }
        };
        if digits >= 18 {
            for at in start..=end - 18 {
                if resident_id_bytes_valid(&s[at..at + 18]) {
                    resident(at, found);
                }
            }
        }
        if digits >= 17 && end < n && s[end] == b'X' && resident_id_bytes_valid(&s[end - 17..=end]) {
            resident(end - 17, found);
        }
        let ids = &ids[..id_count];
        // The weaker checks only from boundary to boundary.
        if digits >= MOBILE_DIGITS {
            for from in start..end {
                if from != start && !separated_at(from) {
                    continue;
                }
                for to in from + MOBILE_DIGITS..=(from + 19).min(end) {
                    if to != end && !separated_at(to) {
                        continue;
                    }
                    if ids.iter().any(|&(id_start, id_end)| id_start <= from && to <= id_end) {
                        continue;
                    }
                    let window = &s[from..to];
                    let kind = match window.len() {
                        11 => mobile_bytes(window).then_some(IdentifierKind::Mobile),
                        13 => {
                            (window.starts_with(b"86") && mobile_bytes(&window[2..])).then_some(IdentifierKind::Mobile)
                        }
                        15 => legacy_resident_id_valid(window).then_some(IdentifierKind::ResidentId),
                        16..=19 => bank_card_bytes(window).then_some(IdentifierKind::BankCard),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        found(kind, from, to);
                    }
                }
            }
        }
        start = end;
    }
    if with_uscc && n >= 18 {
        let boundary = |position: usize| {
            position == 0
                || position == n
                || separated_at(position)
                || s[position - 1].is_ascii_digit() != s[position].is_ascii_digit()
        };
        for at in 0..=n - 18 {
            // A code of digits alone is taken only as a whole number, like the weaker checks.
            let anchored = if s[at..at + 18].iter().all(u8::is_ascii_digit) {
                boundary(at) && boundary(at + 18)
            } else {
                boundary(at) || boundary(at + 18)
            };
            if anchored && uscc_bytes_valid(&s[at..at + 18]) {
                found(IdentifierKind::Uscc, at, at + 18);
            }
        }
    }
}

/// The byte range in `text` of the run's letters and digits `start..end`, the run beginning
/// at byte `offset` (found again by walking the text: only finds pay for it).
fn text_range(text: &str, offset: usize, start: usize, end: usize) -> (usize, usize) {
    let (mut index, mut range) = (0, (offset, text.len()));
    for (at, c) in text[offset..].char_indices() {
        if fold_width(c).is_ascii_alphanumeric() {
            if index == start {
                range.0 = offset + at;
            }
            if index + 1 == end {
                range.1 = offset + at + c.len_utf8();
                break;
            }
            index += 1;
        }
    }
    range
}

/// Finds e-mail addresses in `text`: whole `@`-tokens of address characters.
fn find_emails(text: &str, found: &mut impl FnMut(usize, usize)) {
    let bytes = text.as_bytes();
    let address_byte = |byte: u8| byte.is_ascii_alphanumeric() || b"._%+-".contains(&byte);
    let mut searched = 0;
    while let Some(at) = bytes[searched..].iter().position(|&byte| byte == b'@').map(|at| at + searched) {
        let mut start = at;
        while start > 0 && address_byte(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && address_byte(bytes[end]) {
            end += 1;
        }
        let token = text[start..end].trim_end_matches('.');
        if is_email(token) {
            found(start, start + token.len());
        }
        searched = at + 1;
    }
}

/// Reusable buffers for scanning many cells: one scanner per review, so that a cell costs no
/// allocation once the buffers have grown to the longest cell.
#[derive(Debug, Default)]
pub struct IdentifierScanner {
    /// The current run of letters and digits, folded and upper-cased.
    run: Vec<u8>,
    /// Whether a separator stood before each byte of `run`.
    separated: Vec<bool>,
    /// Where `run` starts in the text.
    run_offset: usize,
    /// A decoded copy of `run` or of a part of `canonical`.
    decoded: Vec<u8>,
    /// The text as compared with identifier values, and where something was left out.
    canonical: Vec<u8>,
    removed: Vec<bool>,
    /// Full-width e-mail text folded to ASCII.
    folded: String,
}

impl IdentifierScanner {
    /// A scanner with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `text` holds: regulated identifiers (through the disguises the module
    /// documentation lists) and, with `set`, values of the grant's identifier columns.
    pub fn text(&mut self, text: &str, set: Option<&IdentifierSet>) -> Finds {
        let mut finds = Finds::default();
        self.regulated(text, &mut |kind, _, _| finds = finds.with(kind));
        if set.is_some_and(|set| self.holds_value(set, text)) {
            finds = finds.with_granted_value();
        }
        finds
    }

    /// What an integer of magnitude `magnitude` (the sign is not part of an identifier) holds.
    pub fn integer(&mut self, magnitude: u128, set: Option<&IdentifierSet>) -> Finds {
        let mut finds = Finds::default();
        if magnitude < SMALLEST_COMPARED || magnitude < SMALLEST_MOBILE && set.is_none() {
            return finds;
        }
        let mut buffer = [0u8; 40];
        let digits = decimal_digits(magnitude, &mut buffer);
        if magnitude >= SMALLEST_MOBILE {
            check_run(digits, &[], true, &mut |kind, _, _| finds = finds.with(kind));
        }
        if set.is_some_and(|set| set.contains_canonical(digits)) {
            finds = finds.with_granted_value();
        }
        finds
    }

    /// What a float holds: an integral value is judged by its integer (`13812345678.0` is a
    /// mobile); one too large to hold every digit (from 2⁵³) by each integer that rounds to it,
    /// so a resident ID or card number cast to a float is still found although its last digits
    /// are gone. Values with a fraction are not judged.
    pub fn float(&mut self, value: f64, set: Option<&IdentifierSet>) -> Finds {
        let magnitude = value.abs();
        if !magnitude.is_finite() || magnitude < SMALLEST_COMPARED as f64 || magnitude.fract() != 0.0 {
            return Finds::default();
        }
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        if magnitude <= EXACT || magnitude >= 1e19 {
            // Exact (or too large for any identifier's 19 digits to matter): its own digits.
            return self.integer(magnitude as u128, set);
        }
        let integer = magnitude as u64;
        let exponent = ((magnitude.to_bits() >> 52) & 0x7ff) as i64 - 1023;
        let half_step = 1u64 << (exponent - 53);
        let (low, high) = (integer - half_step, integer + half_step);
        let mut finds = self.integer(u128::from(integer), set);
        let mut buffer = [0u8; 40];
        let digits = decimal_digits(u128::from(integer), &mut buffer);
        if digits.len() == 18 && resident_id_shaped(digits) {
            let found = (low..=high).any(|candidate| {
                let mut buffer = [0u8; 40];
                resident_id_bytes_valid(decimal_digits(u128::from(candidate), &mut buffer))
            });
            if found {
                finds = finds.with(IdentifierKind::ResidentId);
            }
        }
        if (16..=19).contains(&digits.len()) && matches!(digits[0], b'3'..=b'6' | b'9') {
            let found = (low..=high).any(|candidate| {
                let mut buffer = [0u8; 40];
                bank_card_bytes(decimal_digits(u128::from(candidate), &mut buffer))
            });
            if found {
                finds = finds.with(IdentifierKind::BankCard);
            }
        }
        finds
    }

    /// What a decimal `unscaled × 10^−scale` holds: judged by its integer when its fraction is
    /// zero, not judged otherwise.
    pub fn decimal(&mut self, unscaled: i128, scale: i8, set: Option<&IdentifierSet>) -> Finds {
        let magnitude = unscaled.unsigned_abs();
        let integer = if scale <= 0 {
            10u128.checked_pow(u32::from(scale.unsigned_abs())).and_then(|factor| magnitude.checked_mul(factor))
        } else {
            match 10u128.checked_pow(scale.unsigned_abs().into()) {
                Some(divisor) if magnitude.is_multiple_of(divisor) => Some(magnitude / divisor),
                Some(_) => None,
                None => (magnitude == 0).then_some(0),
            }
        };
        integer.map(|integer| self.integer(integer, set)).unwrap_or_default()
    }

    /// Reports every regulated identifier of `text` with its byte range (ranges may repeat or
    /// overlap when several readings find the same identifier).
    pub fn regulated(&mut self, text: &str, found: &mut impl FnMut(IdentifierKind, usize, usize)) {
        let bytes = text.as_bytes();
        // One sweep decides what is worth a closer look: letters and digits (full-width forms
        // are three bytes opening with 0xEF), an '@'.
        let (mut alike, mut at, mut wide) = (0usize, false, false);
        for &byte in bytes {
            alike += usize::from(byte.is_ascii_alphanumeric() || byte == 0xEF);
            at |= byte == b'@';
            wide |= byte == 0xEF;
        }
        if at {
            find_emails(text, &mut |start, end| found(IdentifierKind::Email, start, end));
        }
        if wide && text.contains('＠') {
            self.folded.clear();
            self.folded.extend(text.chars().map(fold_width));
            let mut any = false;
            find_emails(&self.folded, &mut |_, _| any = true);
            if any {
                found(IdentifierKind::Email, 0, text.len());
            }
        }
        if alike < MOBILE_DIGITS {
            return;
        }
        self.clear_run();
        let mut pending_separator = false;
        let mut offset = 0;
        while offset < bytes.len() {
            let byte = bytes[offset];
            if byte.is_ascii() {
                offset += 1;
                match ASCII_CLASS[usize::from(byte)] {
                    ASCII_ALNUM => {
                        if self.run.is_empty() {
                            self.run_offset = offset - 1;
                        }
                        self.separated.push(pending_separator && !self.run.is_empty());
                        pending_separator = false;
                        self.run.push(byte.to_ascii_uppercase());
                    }
                    ASCII_SEPARATOR => pending_separator = true,
                    _ => {
                        if !self.run.is_empty() {
                            self.check_current_run(text, found);
                        }
                        pending_separator = false;
                    }
                }
                continue;
            }
            let (folded, width) = if !may_fold_or_ignore(byte) {
                // Neither a letter, a digit nor a separator.
                ('\u{FFFD}', utf8_width(byte))
            } else {
                let Some(c) = text[offset..].chars().next() else { break };
                (fold_width(c), c.len_utf8())
            };
            if folded.is_ascii_alphanumeric() {
                if self.run.is_empty() {
                    self.run_offset = offset;
                }
                self.separated.push(pending_separator && !self.run.is_empty());
                pending_separator = false;
                self.run.push((folded as u8).to_ascii_uppercase());
            } else if is_soft_separator(folded) {
                pending_separator = true;
            } else {
                if !self.run.is_empty() {
                    self.check_current_run(text, found);
                }
                pending_separator = false;
            }
            offset += width;
        }
        self.check_current_run(text, found);
    }

    fn clear_run(&mut self) {
        self.run.clear();
        self.separated.clear();
    }

    /// Checks the run gathered so far as written, with look-alikes read as digits, and with
    /// letters read as digits; then starts a new run.
    fn check_current_run(&mut self, text: &str, found: &mut impl FnMut(IdentifierKind, usize, usize)) {
        let Self { run, separated, run_offset, decoded, .. } = self;
        if run.len() >= MOBILE_DIGITS {
            let (mut digits, mut letters, mut lookalikes) = (0, 0, 0);
            for &byte in run.iter() {
                digits += usize::from(byte.is_ascii_digit());
                letters += usize::from(letter_digit(byte).is_some());
                lookalikes += usize::from(lookalike_digit(byte).is_some());
            }
            let mut report = |kind, start: usize, end: usize| {
                let (start, end) = text_range(text, *run_offset, start, end);
                found(kind, start, end)
            };
            if digits >= MOBILE_DIGITS || run.len() >= 18 {
                check_run(run, separated, true, &mut report);
            }
            if lookalikes > 0 && digits + lookalikes >= MOBILE_DIGITS {
                decoded.clear();
                decoded.extend(run.iter().map(|&byte| lookalike_digit(byte).unwrap_or(byte)));
                check_run(decoded, separated, false, &mut report);
            }
            if letters > 0 && digits + letters >= MOBILE_DIGITS {
                decode_letter_segments(run, decoded);
                check_run(decoded, separated, false, &mut report);
            }
        }
        self.clear_run();
    }

    /// Whether `text` holds a value of `set`: as a whole, between two boundaries (where
    /// punctuation or whitespace stood, or letters turn to digits), or — for values of at
    /// least three characters and six bytes — anywhere inside; as written, with letters read as
    /// digits and with look-alikes read as digits. Compared in the set's canonical form
    /// (full-width folded, upper-cased, punctuation and whitespace left out).
    pub fn holds_value(&mut self, set: &IdentifierSet, text: &str) -> bool {
        if set.is_empty() {
            return false;
        }
        if text.len() < set.lengths.first().map_or(usize::MAX, |&(shortest, _)| shortest) {
            // Canonical forms are never longer than the text.
            return false;
        }
        let Self { canonical, removed, decoded, .. } = self;
        canonicalise(text, canonical, removed);
        if set.found_in_canonical(canonical, removed) {
            return true;
        }
        if !set.has_digits {
            return false;
        }
        // Digits written as letters or look-alikes, read back run by run of ASCII letters and
        // digits.
        let mut start = 0;
        while start < canonical.len() {
            if !canonical[start].is_ascii_alphanumeric() {
                start += 1;
                continue;
            }
            let mut end = start + 1;
            while end < canonical.len() && canonical[end].is_ascii_alphanumeric() {
                end += 1;
            }
            let run = &canonical[start..end];
            // A reading can only hold a value if it makes a run of digits as long as the
            // value's: count the longest stretches first, decode only when one is long enough.
            let (mut as_letters, mut as_lookalikes) = ((0, 0), (0, 0));
            for &byte in run {
                let digit = byte.is_ascii_digit();
                as_letters.0 = if digit || letter_digit(byte).is_some() { as_letters.0 + 1 } else { 0 };
                as_letters.1 = as_letters.1.max(as_letters.0);
                as_lookalikes.0 = if digit || lookalike_digit(byte).is_some() { as_lookalikes.0 + 1 } else { 0 };
                as_lookalikes.1 = as_lookalikes.1.max(as_lookalikes.0);
            }
            for letters in [true, false] {
                let stretch = if letters { as_letters.1 } else { as_lookalikes.1 };
                if stretch < set.min_digit_run {
                    continue;
                }
                if letters {
                    decode_letter_segments(run, decoded);
                } else {
                    decoded.clear();
                    decoded.extend(run.iter().map(|&byte| lookalike_digit(byte).unwrap_or(byte)));
                }
                // A value with digits shows its longest run of digits; without one as long,
                // the reading cannot hold it.
                if decoded.as_slice() != run
                    && longest_digit_run(decoded) >= set.min_digit_run
                    && set.found_in_canonical(decoded, &removed[start..=end])
                {
                    return true;
                }
            }
            start = end;
        }
        false
    }
}

fn longest_digit_run(bytes: &[u8]) -> usize {
    let (mut longest, mut current) = (0, 0);
    for byte in bytes {
        current = if byte.is_ascii_digit() { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    longest
}

/// Copies `run` into `out` with the letters `A`–`J` read as digits, in each stretch of digits
/// and such letters that has more letters than digits: what `translate()` makes of a number.
/// Stretches that are mostly digits keep their letters (`91330502MA2B3C4D5X` is a credit
/// code, not digits to read).
fn decode_letter_segments(run: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(run);
    let mut start = 0;
    while start < run.len() {
        if !run[start].is_ascii_digit() && letter_digit(run[start]).is_none() {
            start += 1;
            continue;
        }
        let mut end = start;
        let mut letters = 0;
        while end < run.len() && (run[end].is_ascii_digit() || letter_digit(run[end]).is_some()) {
            letters += usize::from(!run[end].is_ascii_digit());
            end += 1;
        }
        if letters * 2 > end - start {
            for byte in &mut out[start..end] {
                *byte = letter_digit(*byte).unwrap_or(*byte);
            }
        }
        start = end;
    }
}

/// Whether a character opening with `lead` (not ASCII) can be full-width, whitespace or
/// punctuation: U+0080–07FF (`C2`–`DF`), U+1000–1FFF (`E1`), U+2000–2FFF (`E2`), U+3000–3FFF
/// (`E3`) and U+F000–FFFF (`EF`). Others — CJK ideographs among them — are never folded nor
/// left out.
fn may_fold_or_ignore(lead: u8) -> bool {
    matches!(lead, 0xC2..=0xDF | 0xE1..=0xE3 | 0xEF)
}

/// The length of the UTF-8 sequence opening with `lead`.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Writes the canonical form of `text` into `out` — full-width folded, ASCII letters
/// upper-cased, ignorable characters left out — and into `removed` (one longer than `out`)
/// whether something was left out before each byte.
fn canonicalise(text: &str, out: &mut Vec<u8>, removed: &mut Vec<bool>) {
    out.clear();
    removed.clear();
    let bytes = text.as_bytes();
    let mut pending = false;
    let mut offset = 0;
    while offset < bytes.len() {
        let byte = bytes[offset];
        if byte.is_ascii() {
            offset += 1;
            if matches!(ASCII_CLASS[usize::from(byte)], ASCII_SEPARATOR | ASCII_PUNCTUATION) {
                pending = true;
            } else {
                removed.push(pending);
                out.push(byte.to_ascii_uppercase());
                pending = false;
            }
            continue;
        }
        if !may_fold_or_ignore(byte) {
            // Most other characters (CJK among them) are copied as they are.
            let width = utf8_width(byte);
            removed.push(pending);
            removed.extend(std::iter::repeat_n(false, width - 1));
            out.extend_from_slice(&bytes[offset..(offset + width).min(bytes.len())]);
            offset += width;
            pending = false;
            continue;
        }
        let Some(c) = text[offset..].chars().next() else { break };
        offset += c.len_utf8();
        let folded = fold_width(c);
        if is_ignorable(folded) {
            pending = true;
            continue;
        }
        let mut encoded = [0u8; 4];
        let encoded = folded.to_ascii_uppercase().encode_utf8(&mut encoded).as_bytes();
        removed.push(pending);
        removed.extend(std::iter::repeat_n(false, encoded.len() - 1));
        out.extend_from_slice(encoded);
        pending = false;
    }
    removed.push(pending);
}

/// Finds checksum-valid identifiers in free text, through the disguises the module
/// documentation lists; each match once, in text order.
pub fn find_identifiers(text: &str) -> Vec<IdentifierMatch> {
    let mut found = Vec::new();
    IdentifierScanner::new().regulated(text, &mut |kind, start, end| found.push(IdentifierMatch { kind, start, end }));
    found.sort_by_key(|found| (found.start, found.end, found.kind));
    found.dedup();
    found
}

/// The exact values of a grant's identifier columns, for finding them copied into outputs.
///
/// Built inside the domain from the stored data and never serialised. Each value is kept in
/// its canonical form (full-width folded, upper-cased, punctuation and whitespace left out) as
/// 64-bit hashes in an open-addressing table at most half full: one for the value as a whole
/// cell or field, and one more for values long enough to be looked for inside longer text.
/// In front of the table sit three filters that stay in the cache — the first bytes of the
/// values, their (first, last) byte pairs, and one bit per hash — so most windows of a scanned
/// text cost a bit test or two, and a probe that misses the cache is rare. About 35 bytes per
/// identifier. A hash collision can only make an innocent string look like an identifier (the
/// output waits or is blocked), never the reverse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifierSet {
    /// Hashes by open addressing (linear probing); 0 marks an empty slot.
    slots: Vec<u64>,
    /// Distinct identifiers held.
    len: usize,
    /// Distinct canonical byte lengths of the values, ascending, each with whether some value
    /// of that length is looked for inside longer text.
    lengths: Vec<(usize, bool)>,
    /// Bit `hash >> filter_shift` set for every hash held.
    filter: Vec<u64>,
    filter_shift: u32,
    /// Bit b set when some value's canonical form opens with byte b.
    firsts: [u64; 4],
    /// Bit `first << 8 | last` set for the first and last byte of every value (8 KiB).
    ends: Vec<u64>,
    /// Some value has a digit: letters and look-alikes are read as digits too.
    has_digits: bool,
    /// The shortest longest-run-of-digits among values with digits.
    min_digit_run: usize,
}

/// Shortest value the set keeps: shorter ones (`1`, `男`) would match ordinary cells.
pub const MIN_IDENTIFIER_CHARS: usize = 2;
/// Shortest value (in characters; and at least six bytes) looked for inside longer text:
/// two-character names (`王伟`) are also words and parts of place names (`吴兴区`), so they are
/// found only as whole cells or between punctuation.
pub const MIN_INNER_CHARS: usize = 3;
const MIN_INNER_BYTES: usize = 6;
/// Longer values are not kept: an identifier is short.
const MAX_IDENTIFIER_BYTES: usize = 1024;
/// Multiplier of the polynomial hash (odd, so that no byte's contribution vanishes).
const HASH_BASE: u64 = 0x9E37_79B9_7F4A_7C15;
/// Marks the hash under which a value is looked for inside longer text.
const INNER_TAG: usize = 1 << 20;

/// The polynomial hash of `bytes` (each byte counted plus one, so that zeros count).
fn polynomial_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |hash, &byte| hash.wrapping_mul(HASH_BASE).wrapping_add(u64::from(byte) + 1))
}

/// The hash kept for canonical `bytes` (as a whole, or with `INNER_TAG` inside longer text);
/// never 0 (0 marks an empty slot).
#[inline]
fn value_hash(bytes: &[u8], tag: usize) -> u64 {
    let mut mixed = polynomial_hash(bytes) ^ ((bytes.len() | tag) as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    mixed ^= mixed >> 33;
    mixed = mixed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    mixed ^= mixed >> 33;
    mixed = mixed.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    mixed ^= mixed >> 33;
    mixed.max(1)
}

#[inline]
fn bit_set(bits: &[u64], index: usize) -> bool {
    bits[index / 64] & (1 << (index % 64)) != 0
}

fn set_bit(bits: &mut [u64], index: usize) {
    bits[index / 64] |= 1 << (index % 64);
}

impl IdentifierSet {
    /// The set of `values` (values shorter than [`MIN_IDENTIFIER_CHARS`] once canonical are
    /// left out).
    pub fn from_values<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut hashes = Vec::new();
        let mut wholes = Vec::new();
        let mut lengths = std::collections::BTreeMap::<usize, bool>::new();
        let (mut has_digits, mut min_digit_run) = (false, usize::MAX);
        let (mut firsts, mut ends) = ([0u64; 4], vec![0u64; 1024]);
        let (mut canonical, mut removed) = (Vec::new(), Vec::new());
        for value in values {
            canonicalise(value.as_ref(), &mut canonical, &mut removed);
            let chars = canonical.iter().filter(|&&byte| byte & 0xC0 != 0x80).count();
            if chars < MIN_IDENTIFIER_CHARS || canonical.len() > MAX_IDENTIFIER_BYTES {
                continue;
            }
            let digit_run = longest_digit_run(&canonical);
            if digit_run > 0 {
                has_digits = true;
                min_digit_run = min_digit_run.min(digit_run);
            }
            let (first, last) = (canonical[0], canonical[canonical.len() - 1]);
            set_bit(&mut firsts, usize::from(first));
            set_bit(&mut ends, usize::from(first) << 8 | usize::from(last));
            let inner = chars >= MIN_INNER_CHARS && canonical.len() >= MIN_INNER_BYTES;
            *lengths.entry(canonical.len()).or_default() |= inner;
            let whole = value_hash(&canonical, 0);
            wholes.push(whole);
            hashes.push(whole);
            if inner {
                hashes.push(value_hash(&canonical, INNER_TAG));
            }
        }
        wholes.sort_unstable();
        wholes.dedup();
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
        let filter_bits = (hashes.len() * 8).next_power_of_two().max(512);
        let filter_shift = 64 - filter_bits.trailing_zeros();
        let mut filter = vec![0u64; filter_bits / 64];
        for &hash in &hashes {
            set_bit(&mut filter, (hash >> filter_shift) as usize);
        }
        Self {
            slots,
            len: wholes.len(),
            lengths: lengths.into_iter().collect(),
            filter,
            filter_shift,
            firsts,
            ends,
            has_digits,
            min_digit_run,
        }
    }

    /// Distinct identifiers held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn holds_hash(&self, hash: u64) -> bool {
        if !bit_set(&self.filter, (hash >> self.filter_shift) as usize) {
            return false;
        }
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

    fn contains_canonical(&self, canonical: &[u8]) -> bool {
        !self.is_empty()
            && self.lengths.iter().any(|&(length, _)| length == canonical.len())
            && self.holds_hash(value_hash(canonical, 0))
    }

    /// Whether `value`, as a whole and in canonical form, is one of the identifiers.
    pub fn contains(&self, value: &str) -> bool {
        let (mut canonical, mut removed) = (Vec::new(), Vec::new());
        canonicalise(value, &mut canonical, &mut removed);
        self.contains_canonical(&canonical)
    }

    /// Whether `text` holds one of the identifiers: see [`IdentifierScanner::holds_value`]
    /// (which reuses its buffers across texts).
    pub fn found_in(&self, text: &str) -> bool {
        IdentifierScanner::new().holds_value(self, text)
    }

    /// Whether canonical `bytes` hold a value between two boundaries or, for long values,
    /// anywhere; `removed[i]` says something was left out before byte `i`.
    fn found_in_canonical(&self, bytes: &[u8], removed: &[bool]) -> bool {
        let n = bytes.len();
        let Some(&(shortest, _)) = self.lengths.first() else { return false };
        if n < shortest {
            return false;
        }
        /// Digits, ASCII letters, other ASCII, and the bytes of other characters.
        fn class(byte: u8) -> u8 {
            if byte.is_ascii_digit() {
                0
            } else if byte.is_ascii_alphabetic() {
                1
            } else if byte.is_ascii() {
                2
            } else {
                3
            }
        }
        let boundary = |position: usize| {
            position == 0
                || position == n
                || removed.get(position).copied().unwrap_or(false)
                || class(bytes[position - 1]) != class(bytes[position])
        };
        let char_start = |position: usize| position == n || bytes[position] & 0xC0 != 0x80;
        for from in 0..=n - shortest {
            let first = bytes[from];
            if !bit_set(&self.firsts, usize::from(first)) || !char_start(from) {
                continue;
            }
            let at_boundary = boundary(from);
            for &(length, inner) in &self.lengths {
                let to = from + length;
                if to > n {
                    break;
                }
                if !bit_set(&self.ends, usize::from(first) << 8 | usize::from(bytes[to - 1])) {
                    continue;
                }
                let window = &bytes[from..to];
                let found = if at_boundary && boundary(to) {
                    self.holds_hash(value_hash(window, 0))
                } else {
                    inner && char_start(to) && self.holds_hash(value_hash(window, INNER_TAG))
                };
                if found {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resident ID with a valid check character from its first 17 digits.
    fn resident_id(first17: &str) -> String {
        format!("{first17}{}", char::from(resident_id_check_char(first17.as_bytes()).unwrap()))
    }

    fn kinds(text: &str) -> Vec<IdentifierKind> {
        let mut kinds: Vec<_> = find_identifiers(text).iter().map(|found| found.kind).collect();
        kinds.dedup();
        kinds
    }

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
    fn identifier_values_are_found_inside_longer_strings_as_stored_and_normalised() {
        let id = resident_id("33050219800101123");
        let set = IdentifierSet::from_values([id.as_str(), "王建国", "P00000042", "王伟"]);
        for text in [
            format!("{id}x"),
            format!("9{id}"),
            format!("name:王建国;id:{id}"),
            format!("联系人{}电话", "王建国"),
            format!("{}-{}-{}", &id[..6], &id[6..14], &id[14..]),
            "ｐ００００００４２".to_string(),
            "p 0000 0042".to_string(),
            "person P00000042!".to_string(),
            "ref xP00000042y".to_string(),
            "王伟，李娜，张强".to_string(),
        ] {
            assert!(set.found_in(&text), "{text}");
        }
        let encoded: String =
            id.chars().map(|c| c.to_digit(10).map_or(c, |digit| char::from(b'a' + digit as u8))).collect();
        assert!(set.found_in(&encoded), "letter-encoded {encoded}");
        assert!(set.found_in(&format!("{}{}", "id:", id.replace('0', "O").replace('1', "l"))), "look-alikes");
        assert!(set.contains("p-0000-0042"), "separators are not part of a value");
        for clean in ["吴兴区王伟路", "王建", "P0000004", "P000000043", "总计 12,345"] {
            assert!(!set.found_in(clean), "{clean}");
        }
    }

    #[test]
    fn the_standards_example_resident_id_is_valid() {
        assert!(is_valid_resident_id("11010519491231002X"));
        assert!(is_valid_resident_id("11010519491231002x"));
        assert!(!is_valid_resident_id("110105194912310021"), "wrong check character");
        assert!(!is_valid_resident_id("11010519491331002X"), "month 13");
        assert!(!is_valid_resident_id(&resident_id("00010519491231002")), "no region 00");
        assert!(!is_valid_resident_id(&resident_id("11010519490230002")), "30 February");
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
        assert!(is_valid_uscc(&code.to_lowercase()), "lower case reads the same");
        let wrong = if check == b'0' { '1' } else { '0' };
        assert!(!is_valid_uscc(&format!("{}{wrong}", std::str::from_utf8(first17).unwrap())));
        assert_eq!(uscc_check_char(b"91330502MA2B3C4DI"), None, "I is not in the alphabet");
        let no_authority = b"B1330502MA2B3C4D5";
        let code =
            format!("{}{}", std::str::from_utf8(no_authority).unwrap(), uscc_check_char(no_authority).unwrap() as char);
        assert!(!is_valid_uscc(&code), "B is no registration authority");
    }

    #[test]
    fn luhn_mobiles_and_emails() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(is_bank_card("4111111111111111"));
        assert!(!is_bank_card("1717171717171"), "13 digits: a millisecond timestamp, not a card");
        let card = format!("622202123456789012{}", char::from(luhn_check_digit("622202123456789012").unwrap()));
        assert!(is_bank_card(&card));
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
        for plain in
            ["2025", "123456.75", "total 98231 kWh", "吴兴区,纺织业,1234567.5", "2025-01", "2025-01-15 13:45:07"]
        {
            assert!(find_identifiers(plain).is_empty(), "{plain}");
        }
        assert!(find_identifiers("913812345678").is_empty(), "a mobile's digits inside a longer number");
        assert!(find_identifiers("1717171717171").is_empty(), "13-digit timestamps are no cards");
    }

    #[test]
    fn resident_ids_are_found_concatenated_with_other_text() {
        let id = resident_id("33050219800101123");
        for text in [format!("{id}x"), format!("x{id}9"), format!("9{id}"), format!("name:张三;id:{id};")] {
            assert_eq!(kinds(&text), vec![IdentifierKind::ResidentId], "{text}");
        }
        let found = find_identifiers(&format!("ab{id}cd"));
        assert_eq!((found[0].start, found[0].end), (2, 20), "the range in the text");
    }

    #[test]
    fn separators_between_digits_are_read_through() {
        let id = resident_id("33050219800101123");
        let card = format!("622202123456789012{}", char::from(luhn_check_digit("622202123456789012").unwrap()));
        let cases = [
            (format!("{}-{}-{}-{}", &id[..6], &id[6..10], &id[10..14], &id[14..]), IdentifierKind::ResidentId),
            (format!("{} {} {}", &id[..6], &id[6..14], &id[14..]), IdentifierKind::ResidentId),
            (format!("{}.{}/{}_{}", &id[..6], &id[6..10], &id[10..14], &id[14..]), IdentifierKind::ResidentId),
            (format!("{}\u{200B}{}", &id[..9], &id[9..]), IdentifierKind::ResidentId),
            (format!("{}－{}", &id[..9], &id[9..]), IdentifierKind::ResidentId),
            ("138-1234-5678".to_string(), IdentifierKind::Mobile),
            ("+86 138 1234 5678".to_string(), IdentifierKind::Mobile),
            ("13812345678.0".to_string(), IdentifierKind::Mobile),
            (
                format!("{} {} {} {} {}", &card[..4], &card[4..8], &card[8..12], &card[12..16], &card[16..]),
                IdentifierKind::BankCard,
            ),
        ];
        for (text, kind) in cases {
            assert!(kinds(&text).contains(&kind), "{text}: {:?}", kinds(&text));
        }
        let split = format!("{}-{}", &"33050219800101001X"[..6], &"33050219800101001X"[6..]);
        assert_eq!(kinds(&split), vec![IdentifierKind::ResidentId], "no mobile read out of the ID's own digits");
        assert_eq!(kinds("13812345678 13912345678"), vec![IdentifierKind::Mobile]);
        assert_eq!(find_identifiers("13812345678 13912345678").len(), 2, "two mobiles side by side");
    }

    #[test]
    fn full_width_digits_and_case_are_folded() {
        let id = resident_id("33050219800101001");
        assert!(id.ends_with('X'));
        let full_width: String = id.chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap()).collect::<String>();
        assert_eq!(kinds(&full_width), vec![IdentifierKind::ResidentId], "{full_width}");
        assert_eq!(kinds(&id.to_lowercase()), vec![IdentifierKind::ResidentId]);
        let first17 = b"91330502MA2B3C4D5";
        let uscc = format!("{}{}", std::str::from_utf8(first17).unwrap(), uscc_check_char(first17).unwrap() as char);
        assert_eq!(kinds(&uscc.to_lowercase()), vec![IdentifierKind::Uscc]);
        assert_eq!(kinds(&format!("code{}x", uscc.to_lowercase())), vec![IdentifierKind::Uscc], "concatenated");
        assert_eq!(kinds("ZHANG.SAN@EXAMPLE.COM"), vec![IdentifierKind::Email]);
        assert_eq!(kinds("zhang＠example．com"), vec![IdentifierKind::Email], "full-width @ and dot");
    }

    #[test]
    fn digits_written_as_letters_or_look_alikes_are_read_back() {
        let id = resident_id("33050219800101123");
        let lower: String =
            id.chars().map(|c| c.to_digit(10).map_or(c, |digit| char::from(b'a' + digit as u8))).collect();
        let upper = lower.to_uppercase();
        assert_eq!(kinds(&lower), vec![IdentifierKind::ResidentId], "{lower}");
        assert_eq!(kinds(&upper), vec![IdentifierKind::ResidentId], "{upper}");
        assert_eq!(kinds(&format!("id:{lower};")), vec![IdentifierKind::ResidentId]);
        let lookalike = id.replace('0', "O").replace('1', "l");
        assert_eq!(kinds(&lookalike), vec![IdentifierKind::ResidentId], "{lookalike}");
        assert_eq!(kinds("I38I2345678"), vec![IdentifierKind::Mobile]);
        assert_eq!(kinds("bdiabcdefgh"), vec![IdentifierKind::Mobile], "13801234567 letter-encoded");
        for clean in ["a bad cafe faced a deaf head", "hello world, all good"] {
            assert!(find_identifiers(clean).is_empty(), "{clean}");
        }
    }

    #[test]
    fn integers_floats_and_decimals_are_judged_by_their_digits() {
        let mut scanner = IdentifierScanner::new();
        let id = resident_id("33050219800101123");
        assert!(id.as_bytes()[17].is_ascii_digit(), "a numeric ID needs a digit check character");
        let id_value: u128 = id.parse().unwrap();
        assert!(scanner.integer(id_value, None).has(IdentifierKind::ResidentId));
        assert!(scanner.integer(13_812_345_678, None).has(IdentifierKind::Mobile));
        assert!(scanner.integer(4_111_111_111_111_111, None).has(IdentifierKind::BankCard));
        assert!(scanner.integer(12_345, None).is_empty());
        assert!(scanner.integer(12_812_345_678, None).is_empty(), "no mobile starts 12");
        assert!(scanner.float(13_812_345_678.0, None).has(IdentifierKind::Mobile));
        assert!(scanner.float(-13_812_345_678.0, None).has(IdentifierKind::Mobile), "signs are no disguise");
        assert!(scanner.float(13_812_345_678.5, None).is_empty(), "fractions are not judged");
        assert!(scanner.float(id_value as f64, None).has(IdentifierKind::ResidentId), "precision lost, still found");
        let card = format!("622202123456789012{}", char::from(luhn_check_digit("622202123456789012").unwrap()));
        assert!(scanner.float(card.parse::<f64>().unwrap(), None).has(IdentifierKind::BankCard));
        assert!(scanner.float(1e18, None).is_empty(), "a round number is no card");
        assert!(scanner.decimal(1_381_234_567_800, 2, None).has(IdentifierKind::Mobile), "138….00");
        assert!(scanner.decimal(1_381_234_567_825, 2, None).is_empty(), "a fraction");
        assert!(scanner.decimal(1_381_234_567, -1, None).has(IdentifierKind::Mobile), "negative scale");
        let set = IdentifierSet::from_values(["P00000042", "100200300"]);
        assert!(scanner.integer(100_200_300, Some(&set)).granted_value());
        assert!(scanner.float(100_200_300.0, Some(&set)).granted_value());
        assert!(!scanner.integer(42, Some(&IdentifierSet::from_values(["42"]))).granted_value(), "short numbers");
    }
}
