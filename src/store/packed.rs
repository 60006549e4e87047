//! Decisions' explanations as the store keeps them: the JSON compressed
//! with LZ4 against a dictionary of the words every explanation uses.
//!
//! An explanation (the rule in words, the candidates with their scores, the
//! thresholds) is about 1 KB of JSON, three quarters of what a turn adds to
//! the database and most of what each group commit writes to the log.
//! Packed, it is a little over 40% of that. The packing is done once per
//! decision, in the worker, and a remembered decision shares it.
//!
//! A packed explanation is a BLOB: a format byte, then the JSON's length
//! (four bytes, little-endian) and its LZ4 block. Rows written before
//! explanations were packed hold the JSON as TEXT, and are read as they are.
//! The dictionary is part of the format: changing it means a new format
//! byte, with the old dictionary kept for the rows that use it.

use rusqlite::types::ValueRef;

/// The format byte of LZ4 against [`DICTIONARY_1`].
const FORMAT_1: u8 = 1;

/// What explanations have in common, from the least to the most frequent
/// (LZ4 reaches the end of its dictionary with the shortest offsets): the
/// rules' words, the members' names, and the shape of a candidate article.
const DICTIONARY_1: &[u8] = br#"sensitive rule  matched; the intent escalates; asking for slot visitor chose article visitor chose intent visitor asked for a person answer marked not helpful intent  asks for a person
no intent and no article above the clarify threshold ( < 0.); fallback  in a row reaches the limit of
intent : close to its example , confidence  >= answer threshold 0., lead 0. >= margin 0. matched by pattern keyword
"corrections":[["",""]],"unknown_terms":["",""],"sensitive":[""],"intents":[{"id":"","priority":0,"by":"pattern","rule":""},{"id":"","priority":0,"by":"keyword","rule":""}],"terms":["","",""],"answer_threshold":0.8,"clarify_threshold":0.4,"clarify_margin":0.15,"fallbacks_in_a_row":0}
{"rule":"article : confidence 0. >= answer threshold 0., lead 0. >= margin 0.
{"rule":"best article confidence 0. (lead 0.): below answer threshold 0. or margin 0., at or above clarify threshold 0.; offering  choice(s)","articles":[{"id":"","confidence":0.,"best_phrase":"","best_phrase_score":0.,"centroid_score":0.,"bm25":},{"id":"","confidence":0.,"best_phrase":"","best_phrase_score":0.,"centroid_score":0.,"bm25":"#;

/// An explanation's JSON, packed for the store.
pub fn pack(json: &str) -> Vec<u8> {
    let block = lz4_flex::block::compress_prepend_size_with_dict(json.as_bytes(), DICTIONARY_1);
    let mut packed = Vec::with_capacity(1 + block.len());
    packed.push(FORMAT_1);
    packed.extend_from_slice(&block);
    packed
}

/// An explanation's JSON from its column: packed (a BLOB) or, for rows
/// written before packing, the JSON itself (TEXT).
pub fn unpack(column: ValueRef<'_>) -> Result<String, String> {
    match column {
        ValueRef::Text(json) => String::from_utf8(json.to_vec()).map_err(|e| e.to_string()),
        ValueRef::Blob([FORMAT_1, block @ ..]) => {
            let json = lz4_flex::block::decompress_size_prepended_with_dict(block, DICTIONARY_1)
                .map_err(|e| format!("a packed explanation does not unpack: {e}"))?;
            String::from_utf8(json).map_err(|e| e.to_string())
        }
        ValueRef::Blob(b) => Err(format!(
            "an explanation in an unknown format ({:?})",
            b.first()
        )),
        other => Err(format!("an explanation of type {}", other.data_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explanation_unpacks_to_the_json_it_was_packed_from() {
        let explanations = [
            String::new(),
            "{}".to_string(),
            r#"{"rule":"article \"shipping/costs.md\": confidence 0.912 >= answer threshold 0.80, lead 0.402 >= margin 0.15","articles":[{"id":"shipping/costs.md","confidence":0.912,"best_phrase":"how much is shipping — ¿cuánto cuesta?","best_phrase_score":1.0,"centroid_score":0.61,"bm25":7.25}],"terms":["ship","cost"],"answer_threshold":0.8,"clarify_threshold":0.4,"clarify_margin":0.15,"fallbacks_in_a_row":0}"#.to_string(),
            "x".repeat(100_000),
        ];
        for json in explanations {
            let packed = pack(&json);
            assert_eq!(packed[0], FORMAT_1);
            assert_eq!(unpack(ValueRef::Blob(&packed)).unwrap(), json);
        }
    }

    #[test]
    fn a_typical_explanation_packs_to_under_half_its_size() {
        let json = r#"{"rule":"best article confidence 0.738 (lead 0.510): below answer threshold 0.80 or margin 0.15, at or above clarify threshold 0.40; offering 1 choice(s)","articles":[{"id":"shipping/international-shipping.md","confidence":0.738,"best_phrase":"do you ship internationally","best_phrase_score":1.0,"centroid_score":0.477,"bm25":8.738},{"id":"shipping/shipping-costs.md","confidence":0.228,"best_phrase":"is shipping free","best_phrase_score":0.263,"centroid_score":0.193,"bm25":3.167},{"id":"intent:order_status","confidence":0.143,"best_phrase":"has my order been shipped yet?","best_phrase_score":0.22,"centroid_score":0.066,"bm25":2.194},{"id":"returns/return-shipping-cost.md","confidence":0.132,"best_phrase":"do I have to pay for return shipping","best_phrase_score":0.22,"centroid_score":0.044,"bm25":2.573},{"id":"shipping/express-and-next-day.md","confidence":0.123,"best_phrase":"is there express shipping","best_phrase_score":0.209,"centroid_score":0.038,"bm25":2.413}],"terms":["ship","internat"],"answer_threshold":0.8,"clarify_threshold":0.4,"clarify_margin":0.15,"fallbacks_in_a_row":0}"#;
        let packed = pack(json);
        assert!(
            packed.len() * 2 < json.len(),
            "{} bytes packed from {}",
            packed.len(),
            json.len()
        );
    }

    #[test]
    fn rows_from_before_packing_and_damaged_ones_are_told_apart() {
        assert_eq!(
            unpack(ValueRef::Text(b"{\"rule\":\"r\"}")).unwrap(),
            "{\"rule\":\"r\"}"
        );
        assert!(unpack(ValueRef::Blob(&[FORMAT_1, 200, 0, 0, 0, 1, 2])).is_err());
        assert!(unpack(ValueRef::Blob(&[9, 1, 2])).is_err());
        assert!(unpack(ValueRef::Blob(&[])).is_err());
        assert!(unpack(ValueRef::Null).is_err());
    }
}
