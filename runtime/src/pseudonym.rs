//! Pseudonymisation: a keyed HMAC-SHA256 token stands in for a column's value.
//!
//! The key is the grant's own (drawn when the grant was frozen), so the same value gives the
//! same token in every column and table of one grant — tokens join — and an unrelated token
//! under any other grant: tokens never link across scenarios. The token is the first 16 bytes
//! of the tag in hex; without the key it cannot be reversed or recomputed from a guess.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use ring::hmac;

/// The name of the token function in the plans the host builds; not callable from SQL.
pub const PSEUDONYM_FUNCTION: &str = "unseen_pseudonym";

/// Bytes of the HMAC tag kept in a token.
const TOKEN_BYTES: usize = 16;

/// `unseen_pseudonym(value)`: the grant-keyed token of `value` as text, null for null.
#[derive(PartialEq, Eq, Hash)]
pub struct Pseudonymiser {
    signature: Signature,
    key: [u8; 32],
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never appears in logs or plans.
        f.debug_struct("Pseudonymiser").finish_non_exhaustive()
    }
}

impl Pseudonymiser {
    /// A token function under `key` (a grant's pseudonym key).
    pub fn udf(key: [u8; 32]) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(Self { signature: Signature::any(1, Volatility::Immutable), key }))
    }

    /// The token of one value's canonical text.
    pub fn token(key: &hmac::Key, value: &str) -> String {
        let tag = hmac::sign(key, value.as_bytes());
        hex::encode(&tag.as_ref()[..TOKEN_BYTES])
    }
}

impl ScalarUDFImpl for Pseudonymiser {
    fn name(&self) -> &str {
        PSEUDONYM_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else { return exec_err!("{PSEUDONYM_FUNCTION} takes one argument") };
        let values = value.to_array(args.number_rows)?;
        // Numbers and dates are tokenised through their canonical text, so 42 and '42' agree.
        let text = cast(&values, &DataType::Utf8)?;
        let text = text.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("cast to Utf8 did not give a string array".into())
        })?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let tokens: StringArray = text.iter().map(|value| value.map(|value| Self::token(&key, value))).collect();
        Ok(ColumnarValue::Array(Arc::new(tokens) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_agree_within_a_key_and_differ_across_keys() {
        let first = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        let second = hmac::Key::new(hmac::HMAC_SHA256, &[2; 32]);
        assert_eq!(
            Pseudonymiser::token(&first, "330102199001011234"),
            Pseudonymiser::token(&first, "330102199001011234")
        );
        assert_ne!(
            Pseudonymiser::token(&first, "330102199001011234"),
            Pseudonymiser::token(&second, "330102199001011234")
        );
        assert_eq!(Pseudonymiser::token(&first, "x").len(), 2 * TOKEN_BYTES);
    }

    #[test]
    fn the_key_is_not_printed() {
        let udf = Pseudonymiser { signature: Signature::any(1, Volatility::Immutable), key: [0xab; 32] };
        assert!(!format!("{udf:?}").contains("171"));
        assert!(!format!("{udf:?}").to_lowercase().contains("ab, "));
    }
}
