//! The knowledge base: articles parsed from `knowledge_base/**/*.md`, indexed
//! with tantivy, searched in two steps.
//!
//! 1. Retrieval: BM25 over one field of each article's phrasings (title,
//!    questions, tags), queried with the visitor's rarest terms, picks
//!    candidate articles. Bodies are not indexed: they are only used to choose
//!    the excerpt an answer shows.
//! 2. Scoring: each candidate gets a confidence in 0..1, the IDF-weighted cosine
//!    between the visitor's terms and the article's best-matching phrasing (its
//!    title or one of its `questions`), blended equally with the cosine against
//!    all its phrasings together (the centroid, which rewards terms the article
//!    uses again and again). IDF counts articles, not phrasings: a word that
//!    all ten questions of one article share is that article's signature, and
//!    counting it ten times would wrongly make it look common. Terms the
//!    knowledge base has never seen weigh more than its rarest terms, since
//!    they match nothing at all, so an off-topic question that shares one
//!    common word with an article scores low. Misspelt words are corrected to a
//!    known term one edit away before scoring, but a corrected term counts only
//!    half in the similarity: it is a guess, and without the discount an
//!    off-topic word that happens to be one edit from a known term would pass
//!    for a match.
//!
//! The confidence is what the engine's thresholds compare against, and every
//! number is reported in the decision's explanation.

mod article;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STRING,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{doc, Index, IndexReader, ReloadPolicy, Searcher, Term};

pub use article::{Article, INTENT_PREFIX};

use crate::content::ContentError;
use crate::text::{self, Synonyms};

/// Weight of the best single phrasing in the confidence; the rest is the
/// similarity to all phrasings of the article together. Measured on the
/// CLINC150 dev set (see the README): the centroid generalises to wordings
/// no single phrasing has, the best phrasing keeps short exact matches strong.
const BEST_PHRASE_WEIGHT: f32 = 0.5;

/// IDF of a term the knowledge base does not know, relative to its rarest
/// known term (one article). Higher, because an unknown word is evidence that
/// the question is about something the articles do not cover.
const UNKNOWN_IDF_FACTOR: f32 = 1.3;

/// Share of its IDF weight a spelling-corrected term contributes to the
/// similarity (the query norm counts it in full).
const CORRECTED_WEIGHT: f32 = 0.5;

/// Retrieval runs over one field holding all of an article's phrasings
/// (title, questions, tags). The body is not indexed: confidence comes from
/// the phrasings alone, so a candidate found only through its body would score
/// nothing. Measured with `cargo bench --bench engine` and both evals: bodies
/// doubled retrieval time, and separate boosted fields took twice as long as
/// one field, with no change in either eval.
/// Most query terms used for retrieval (the rarest ones).
const RETRIEVAL_TERMS: usize = 4;

#[derive(Clone, Copy)]
struct Fields {
    phrasings: Field,
}

/// A title or question of an article: where its terms are in
/// [`KnowledgeBase::phrase_terms`] (sorted, unique term ids), and its norm.
#[derive(Debug, Clone, Copy)]
struct Phrase {
    start: u32,
    end: u32,
    norm: f32,
}

/// What the scorer knows about one article: where its phrasings are in
/// [`KnowledgeBase::phrases`], and the norm of their centroid (each term
/// weighted by the share of the article's phrasings that contain it).
///
/// Every article's phrasings sit side by side in two flat arrays, so that
/// rescoring a candidate reads a few adjacent cache lines rather than one
/// allocation per phrasing: on 10,000 articles, where candidates are rarely
/// in cache, the misses were most of the rescoring's time.
#[derive(Debug, Clone, Copy)]
struct ArticleVectors {
    phrases_start: u32,
    phrases_end: u32,
    centroid_norm: f32,
}

/// One scored article.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Index into [`KnowledgeBase::articles`].
    pub article: usize,
    /// Calibrated confidence, 0..1.
    pub confidence: f32,
    /// Similarity to the best phrasing.
    pub best_phrase_score: f32,
    /// Index of the best phrasing: 0 is the title, then the questions in order.
    pub best_phrase: usize,
    /// Similarity to all phrasings together.
    pub centroid_score: f32,
    /// The BM25 score that retrieved it.
    pub bm25: f32,
}

/// The result of a search, with what the explanation needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// Best first.
    pub hits: Vec<Hit>,
    /// Query terms after analysis and correction.
    pub terms: Vec<String>,
    /// Misspellings corrected: (as typed, corrected term).
    pub corrections: Vec<(String, String)>,
    /// Terms the knowledge base does not know at all.
    pub unknown: Vec<String>,
}

/// An indexed knowledge base.
pub struct KnowledgeBase {
    pub articles: Vec<Article>,
    dir: PathBuf,
    /// A point-in-time view of the index: this snapshot never changes.
    searcher: Searcher,
    /// Segment ordinal -> document id -> article index.
    doc_articles: Vec<Vec<u32>>,
    fields: Fields,
    /// Per article, per paragraph: its term ids, for choosing excerpts.
    paragraph_terms: Vec<Vec<Vec<u32>>>,
    vocab: HashMap<String, u32>,
    /// Term id -> term.
    names: Vec<String>,
    idf: Vec<f32>,
    /// IDF given to a term the knowledge base does not know.
    unknown_idf: f32,
    /// How many articles' phrasings contain each term (for IDF and for picking
    /// corrections).
    df: Vec<u32>,
    /// Deletion neighbourhood (one character removed, and the term itself) -> term ids.
    deletions: HashMap<String, Vec<u32>>,
    vectors: Vec<ArticleVectors>,
    /// Every article's phrasings, in article order.
    phrases: Vec<Phrase>,
    /// The phrasings' term ids, in phrasing order.
    phrase_terms: Vec<u32>,
    synonyms: Synonyms,
    /// Article id -> index into `articles`.
    by_id: HashMap<String, usize>,
    /// Per article: its analysed text and the file stamp it was read with,
    /// for the next reload to reuse when the file has not changed.
    analyses: Vec<(Option<Stamp>, Arc<Analysis>)>,
}

/// A file's modification time and length.
type Stamp = (std::time::SystemTime, u64);

/// An article's text as terms: everything indexing needs, computed once per
/// version of the file.
#[derive(Debug)]
struct Analysis {
    /// The title, then each question.
    phrases: Vec<Vec<String>>,
    tags: Vec<String>,
    paragraphs: Vec<Vec<String>>,
    /// What the tantivy field holds.
    phrasings: String,
}

impl Analysis {
    fn new(a: &Article, synonyms: &Synonyms, analyzer: &mut TextAnalyzer) -> Analysis {
        let phrases = std::iter::once(&a.title)
            .chain(&a.questions)
            .map(|p| text::terms(analyzer, &synonyms.apply(&text::tidy(p))))
            .collect();
        let paragraphs = a
            .paragraphs
            .iter()
            .map(|p| text::terms(analyzer, &synonyms.apply(p)))
            .collect();
        Analysis {
            phrases,
            tags: text::terms(analyzer, &a.tags.join(" ")),
            paragraphs,
            phrasings: synonyms.apply(&text::tidy(&format!(
                "{}\n{}\n{}",
                a.title,
                a.questions.join("\n"),
                a.tags.join(" ")
            ))),
        }
    }
}

impl KnowledgeBase {
    /// Reads every `*.md` under `dir` (recursively, in path order) and indexes it.
    pub fn load(dir: &Path, synonyms: &Synonyms) -> Result<KnowledgeBase, ContentError> {
        KnowledgeBase::load_reusing(dir, Vec::new(), synonyms, None)
    }

    /// Like [`KnowledgeBase::load`], with `extra` entries (intents' examples)
    /// indexed beside the files. Files whose modification time and length are
    /// those `previous` read them with are neither read nor analysed again,
    /// which keeps a reload after one edit fast in a large knowledge base.
    pub fn load_reusing(
        dir: &Path,
        extra: Vec<Article>,
        synonyms: &Synonyms,
        previous: Option<&KnowledgeBase>,
    ) -> Result<KnowledgeBase, ContentError> {
        let previous = previous.filter(|p| p.synonyms == *synonyms && p.dir == dir);
        let mut files = Vec::new();
        collect_markdown(dir, &mut files)?;
        files.sort();
        let mut analyzer = text::analyzer();
        let mut articles = Vec::with_capacity(files.len() + extra.len());
        let mut analyses = Vec::with_capacity(files.len() + extra.len());
        for file in files {
            let id = article_id(dir, &file);
            let stamp = std::fs::metadata(&file)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            let reused = previous.and_then(|p| {
                let &i = p.by_id.get(&id)?;
                let (old_stamp, analysis) = &p.analyses[i];
                (stamp.is_some() && *old_stamp == stamp)
                    .then(|| (p.articles[i].clone(), analysis.clone()))
            });
            let (article, analysis) = match reused {
                Some(found) => found,
                None => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| ContentError::new(&file, None, format!("cannot read: {e}")))?;
                    let article = Article::parse(id, &text, &file)?;
                    let analysis = Arc::new(Analysis::new(&article, synonyms, &mut analyzer));
                    (article, analysis)
                }
            };
            articles.push(article);
            analyses.push((stamp, analysis));
        }
        for article in extra {
            let analysis = Arc::new(Analysis::new(&article, synonyms, &mut analyzer));
            articles.push(article);
            analyses.push((None, analysis));
        }
        KnowledgeBase::assemble(dir, articles, analyses, synonyms)
    }

    /// The articles written as files, without intents' example phrasings.
    pub fn documents(&self) -> impl Iterator<Item = &Article> {
        self.articles.iter().filter(|a| a.intent_id().is_none())
    }

    /// Indexes parsed articles.
    pub fn build(
        dir: &Path,
        articles: Vec<Article>,
        synonyms: &Synonyms,
    ) -> Result<KnowledgeBase, ContentError> {
        let mut analyzer = text::analyzer();
        let analyses = articles
            .iter()
            .map(|a| (None, Arc::new(Analysis::new(a, synonyms, &mut analyzer))))
            .collect();
        KnowledgeBase::assemble(dir, articles, analyses, synonyms)
    }

    /// Indexes analysed articles and derives the scoring tables.
    fn assemble(
        dir: &Path,
        articles: Vec<Article>,
        analyses: Vec<(Option<Stamp>, Arc<Analysis>)>,
        synonyms: &Synonyms,
    ) -> Result<KnowledgeBase, ContentError> {
        let index_err =
            |e: tantivy::TantivyError| ContentError::new(dir, None, format!("index: {e}"));
        let mut schema = Schema::builder();
        let text_opts = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(text::ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let id_field = schema.add_text_field("id", STRING);
        let ord_field = schema.add_u64_field("ord", FAST);
        let fields = Fields {
            phrasings: schema.add_text_field("phrasings", text_opts),
        };
        let index = Index::create_in_ram(schema.build());
        index
            .tokenizers()
            .register(text::ANALYZER, text::analyzer());
        let mut writer = index
            .writer_with_num_threads::<tantivy::TantivyDocument>(1, 30_000_000)
            .map_err(index_err)?;
        for (ord, (a, (_, analysis))) in articles.iter().zip(&analyses).enumerate() {
            writer
                .add_document(doc!(
                    id_field => a.id.clone(),
                    ord_field => ord as u64,
                    fields.phrasings => analysis.phrasings.clone(),
                ))
                .map_err(index_err)?;
        }
        writer.commit().map_err(index_err)?;
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        let searcher = reader.searcher();
        let mut doc_articles = Vec::with_capacity(searcher.segment_readers().len());
        for seg in searcher.segment_readers() {
            let column = seg.fast_fields().u64("ord").map_err(index_err)?;
            doc_articles.push(
                (0..seg.max_doc())
                    .map(|doc| column.first(doc).unwrap_or(0) as u32)
                    .collect::<Vec<u32>>(),
            );
        }

        // Phrasings: the title and each question, as term lists.
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        let mut phrase_terms: Vec<Vec<Vec<u32>>> = Vec::with_capacity(articles.len());
        let mut paragraph_terms: Vec<Vec<Vec<u32>>> = Vec::with_capacity(articles.len());
        let intern = |t: &String, vocab: &mut HashMap<String, u32>, df: &mut Vec<u32>| {
            if let Some(&id) = vocab.get(t) {
                return id;
            }
            let id = vocab.len() as u32;
            vocab.insert(t.clone(), id);
            df.push(0);
            id
        };
        for (_, analysis) in &analyses {
            let mut phrases = Vec::with_capacity(analysis.phrases.len());
            for p in &analysis.phrases {
                let mut ids: Vec<u32> = p.iter().map(|t| intern(t, &mut vocab, &mut df)).collect();
                ids.sort_unstable();
                ids.dedup();
                phrases.push(ids);
            }
            let mut in_article: Vec<u32> = phrases.iter().flatten().copied().collect();
            in_article.sort_unstable();
            in_article.dedup();
            for id in in_article {
                df[id as usize] += 1;
            }
            // Tags and body terms join the vocabulary (so they are not "unknown"
            // and can correct misspellings) without counting as phrasings.
            for t in &analysis.tags {
                intern(t, &mut vocab, &mut df);
            }
            let paragraphs = analysis
                .paragraphs
                .iter()
                .map(|p| {
                    let mut ids: Vec<u32> =
                        p.iter().map(|t| intern(t, &mut vocab, &mut df)).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    ids
                })
                .collect();
            paragraph_terms.push(paragraphs);
            phrase_terms.push(phrases);
        }
        let n = articles.len().max(1) as f32;
        let idf: Vec<f32> = df
            .iter()
            .map(|&d| ((n + 1.0) / (d.max(1) as f32 + 0.5)).ln())
            .collect();
        let unknown_idf = UNKNOWN_IDF_FACTOR * ((n + 1.0) / 1.5).ln();
        let mut vectors = Vec::with_capacity(phrase_terms.len());
        let mut phrases = Vec::new();
        let mut flat_terms = Vec::new();
        let at = |len: usize| u32::try_from(len).expect("fewer than 2^32 phrasings and terms");
        for article in phrase_terms {
            let count = article.len().max(1) as f32;
            let mut share: HashMap<u32, f32> = HashMap::new();
            for p in &article {
                for &t in p {
                    *share.entry(t).or_default() += 1.0 / count;
                }
            }
            let centroid_norm = share
                .iter()
                .map(|(&t, &s)| (s * idf[t as usize]).powi(2))
                .sum::<f32>()
                .sqrt();
            let phrases_start = at(phrases.len());
            for terms in article {
                let norm = terms
                    .iter()
                    .map(|&t| idf[t as usize].powi(2))
                    .sum::<f32>()
                    .sqrt();
                let start = at(flat_terms.len());
                flat_terms.extend_from_slice(&terms);
                phrases.push(Phrase {
                    start,
                    end: at(flat_terms.len()),
                    norm,
                });
            }
            vectors.push(ArticleVectors {
                phrases_start,
                phrases_end: at(phrases.len()),
                centroid_norm,
            });
        }
        let mut names = vec![String::new(); vocab.len()];
        for (term, &id) in &vocab {
            names[id as usize] = term.clone();
        }
        // In id order, so each list is sorted and a correction's ties go the
        // same way every time the content loads.
        let mut deletions: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, term) in names.iter().enumerate() {
            if term.chars().count() < 4 || term.chars().any(|c| c.is_ascii_digit()) {
                continue;
            }
            for variant in deletion_variants(term) {
                deletions.entry(variant).or_default().push(id as u32);
            }
        }

        let by_id = articles
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        Ok(KnowledgeBase {
            by_id,
            analyses,
            articles,
            dir: dir.to_path_buf(),
            searcher,
            doc_articles,
            paragraph_terms,
            fields,
            vocab,
            names,
            idf,
            unknown_idf,
            df,
            deletions,
            vectors,
            phrases,
            phrase_terms: flat_terms,
            synonyms: synonyms.clone(),
        })
    }

    /// The directory the articles came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Looks an article up by id.
    pub fn get(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Analyses visitor text (already [`text::tidy`] and with synonyms
    /// applied) into known terms, correcting misspellings: the term ids with
    /// the share of their weight they contribute (less than 1 for a
    /// correction), sorted by id.
    fn query_terms(&self, prepared: &str) -> (Vec<(u32, f32)>, Search) {
        let mut search = Search::default();
        let mut ids: Vec<(u32, f32)> = Vec::new();
        for t in text::query_terms(prepared) {
            if let Some(&id) = self.vocab.get(&t) {
                ids.push((id, 1.0));
                search.terms.push(t);
            } else if let Some(id) = self.correct(&t) {
                let fixed = self.names[id as usize].clone();
                search.corrections.push((t, fixed.clone()));
                search.terms.push(fixed);
                ids.push((id, CORRECTED_WEIGHT));
            } else if !t.bytes().any(|b| b.is_ascii_digit()) {
                // Unknown numbers and codes (order numbers, dates, amounts) say
                // nothing about the topic; unknown words do.
                search.unknown.push(t);
            }
        }
        // A term typed correctly anywhere in the text counts in full.
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        ids.dedup_by_key(|t| t.0);
        let mut names = std::collections::HashSet::new();
        search.terms.retain(|t| names.insert(t.clone()));
        search.unknown.sort();
        search.unknown.dedup();
        (ids, search)
    }

    /// A known term within one edit (insertion, deletion, substitution or
    /// transposition) of an unknown one; the most common if several.
    fn correct(&self, term: &str) -> Option<u32> {
        if term.chars().count() < 4 || term.chars().any(|c| c.is_ascii_digit()) {
            return None;
        }
        let chars: Vec<char> = term.chars().collect();
        let mut best: Option<u32> = None;
        let mut consider = |ids: &Vec<u32>| {
            for &id in ids {
                // Sharing a one-deletion variant also admits two edits (a
                // deletion and an insertion at different places: "naval" and
                // "avail"), which would turn too many words into others.
                if !one_edit_apart(&chars, &self.names[id as usize]) {
                    continue;
                }
                // The most common; between equally common ones, the first in
                // the content (lowest id), so the choice never depends on the
                // order the lookups happen in.
                let rank = |id: u32| (self.df[id as usize], std::cmp::Reverse(id));
                if best.is_none_or(|b| rank(id) > rank(b)) {
                    best = Some(id);
                }
            }
        };
        if let Some(ids) = self.deletions.get(term) {
            consider(ids);
        }
        for variant in deletion_variants(term) {
            if let Some(ids) = self.deletions.get(&variant) {
                consider(ids);
            }
        }
        best
    }

    /// Searches for the articles that best answer `text`, best first.
    pub fn search(&self, text: &str, candidates: usize) -> Search {
        self.search_prepared(&self.synonyms.apply(&text::tidy(text)), candidates)
    }

    /// [`KnowledgeBase::search`] for a text already [`text::tidy`] and with
    /// this knowledge base's synonyms applied (as the engine has it): the
    /// articles were analysed the same way, once.
    pub fn search_prepared(&self, prepared: &str, candidates: usize) -> Search {
        let (ids, mut search) = self.query_terms(prepared);
        if ids.is_empty() {
            return search;
        }
        // Retrieval needs only the most telling words: the rarest few find the
        // candidates, and every word counts again in the rescoring below.
        let mut telling: Vec<(f32, &str)> = ids
            .iter()
            .map(|&(t, _)| (self.idf[t as usize], self.names[t as usize].as_str()))
            .collect();
        telling.sort_by(|a, b| b.0.total_cmp(&a.0));
        telling.truncate(RETRIEVAL_TERMS);
        let telling: Vec<&str> = telling.into_iter().map(|(_, t)| t).collect();
        let retrieved = self.retrieve(&telling, candidates);
        let known_sq: f32 = ids.iter().map(|&(t, _)| self.idf[t as usize].powi(2)).sum();
        let unknown_sq = search.unknown.len() as f32 * self.unknown_idf.powi(2);
        let q_norm = (known_sq + unknown_sq).sqrt();
        // What a shared term adds to a dot product: its squared IDF, discounted
        // for a correction.
        let query = QueryVector::new(
            ids.iter()
                .map(|&(t, share)| (t, share * self.idf[t as usize].powi(2))),
        );
        let mut hits: Vec<Hit> = retrieved
            .into_iter()
            .map(|(article, bm25)| {
                let v = self.vectors[article];
                let phrases = &self.phrases[v.phrases_start as usize..v.phrases_end as usize];
                let mut best = 0.0f32;
                let mut best_phrase = 0;
                // The centroid's dot product is the mean of the phrasings':
                // a term's weight in it is the share of phrasings holding it.
                let mut dots = 0.0f32;
                for (i, p) in phrases.iter().enumerate() {
                    if p.norm == 0.0 {
                        continue;
                    }
                    let terms = &self.phrase_terms[p.start as usize..p.end as usize];
                    let dot = query.dot(terms);
                    dots += dot;
                    let cos = dot / (q_norm * p.norm);
                    if cos > best {
                        best = cos;
                        best_phrase = i;
                    }
                }
                let centroid_dot = dots / phrases.len().max(1) as f32;
                let centroid_score = if v.centroid_norm > 0.0 {
                    centroid_dot / (q_norm * v.centroid_norm)
                } else {
                    0.0
                };
                let confidence = (BEST_PHRASE_WEIGHT * best
                    + (1.0 - BEST_PHRASE_WEIGHT) * centroid_score)
                    .clamp(0.0, 1.0);
                Hit {
                    article,
                    confidence,
                    best_phrase_score: best,
                    best_phrase,
                    centroid_score,
                    bm25,
                }
            })
            .collect();
        hits.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then_with(|| b.bm25.total_cmp(&a.bm25))
        });
        search.hits = hits;
        search
    }

    /// BM25 retrieval: (article index, score), best first.
    fn retrieve(&self, terms: &[&str], limit: usize) -> Vec<(usize, f32)> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let term = Term::from_field_text(self.fields.phrasings, t);
                let q: Box<dyn Query> =
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                (Occur::Should, q)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = &self.searcher;
        let Ok(top) = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score()) else {
            return Vec::new();
        };
        top.into_iter()
            .filter_map(|(score, addr)| {
                let article = self
                    .doc_articles
                    .get(addr.segment_ord as usize)?
                    .get(addr.doc_id as usize)?;
                Some((*article as usize, score))
            })
            .collect()
    }

    /// The paragraph of an article that best matches the query terms, as plain
    /// text of at most `max_chars` characters (cut at a sentence or word end).
    pub fn excerpt(&self, article: usize, terms: &[String], max_chars: usize) -> String {
        let a = &self.articles[article];
        let mut query: Vec<(u32, f32)> = terms
            .iter()
            .filter_map(|t| self.vocab.get(t).map(|&id| (id, self.idf[id as usize])))
            .collect();
        query.sort_unstable_by_key(|&(id, _)| id);
        query.dedup_by_key(|&mut (id, _)| id);
        let mut best = (0.0f32, 0usize);
        for (i, pt) in self.paragraph_terms[article].iter().enumerate() {
            let score: f32 = intersect(&query, pt).map(|(_, idf)| idf).sum();
            if score > best.0 {
                best = (score, i);
            }
        }
        let para = a.paragraphs.get(best.1).map(String::as_str).unwrap_or("");
        truncate_at_boundary(para, max_chars)
    }
}

/// Cuts text to at most `max` characters, preferring the end of a sentence,
/// then of a word, and marks a cut with an ellipsis.
pub fn truncate_at_boundary(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    if let Some(end) = cut.rfind(['.', '!', '?']) {
        if end > max / 2 {
            return cut[..=end].to_string();
        }
    }
    let word_end = cut.rfind(char::is_whitespace).unwrap_or(cut.len());
    format!("{}…", cut[..word_end].trim_end_matches([',', ';', ':']))
}

/// A query's terms with what each adds to a dot product, for the dot
/// products with many short term lists (an article's phrasings). Most of a
/// phrasing's terms are not in the query: a 64-bit filter of the query's
/// terms turns each of those away with one bit test, where a merge of the
/// two sorted lists took a step whose branch the CPU could not predict.
struct QueryVector {
    filter: u64,
    gains: Vec<(u32, f32)>,
}

impl QueryVector {
    fn new(gains: impl Iterator<Item = (u32, f32)>) -> QueryVector {
        let gains: Vec<(u32, f32)> = gains.collect();
        let filter = gains.iter().fold(0u64, |f, &(t, _)| f | 1 << (t % 64));
        QueryVector { filter, gains }
    }

    /// The dot product with `terms` (unique term ids), each shared term
    /// adding its gain, in the order of `terms`.
    fn dot(&self, terms: &[u32]) -> f32 {
        let mut dot = 0.0;
        for &t in terms {
            if self.filter & (1 << (t % 64)) != 0 {
                if let Some(&(_, gain)) = self.gains.iter().find(|&&(q, _)| q == t) {
                    dot += gain;
                }
            }
        }
        dot
    }
}

/// Query terms (sorted `(id, share)`) also present in a sorted term list.
fn intersect<'a>(a: &'a [(u32, f32)], b: &'a [u32]) -> impl Iterator<Item = (u32, f32)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    let v = a[i];
                    i += 1;
                    j += 1;
                    return Some(v);
                }
            }
        }
        None
    })
}

/// True when `b` is `a` with at most one character inserted, deleted or
/// substituted, or two adjacent characters swapped.
fn one_edit_apart(a: &[char], b: &str) -> bool {
    let b: Vec<char> = b.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a_mid, b_mid) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    match (a_mid.len(), b_mid.len()) {
        (0, 0) | (0, 1) | (1, 0) | (1, 1) => true,
        (2, 2) => a_mid[0] == b_mid[1] && a_mid[1] == b_mid[0],
        _ => false,
    }
}

/// The term with each single character removed.
fn deletion_variants(term: &str) -> Vec<String> {
    let chars: Vec<char> = term.chars().collect();
    (0..chars.len())
        .map(|skip| {
            chars
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != skip)
                .map(|(_, c)| c)
                .collect()
        })
        .collect()
}

/// An article's id: its path below the knowledge-base directory, with `/`.
fn article_id(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir)
        .unwrap_or(file)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ContentError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ContentError::new(dir, None, format!("cannot read directory: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| ContentError::new(dir, None, e.to_string()))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|e| ContentError::new(&path, None, e.to_string()))?;
        if kind.is_dir() {
            collect_markdown(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(id: &str, title: &str, questions: &[&str], body: &str) -> Article {
        let text = format!(
            "---\ntitle: \"{title}\"\nquestions:\n{}\n---\n{body}\n",
            questions
                .iter()
                .map(|q| format!("  - \"{q}\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Article::parse(id.into(), &text, Path::new(id)).unwrap()
    }

    fn kb() -> KnowledgeBase {
        let articles = vec![
            article(
                "returns.md",
                "Our return policy",
                &[
                    "can i send something back",
                    "how many days do i have to return an item",
                ],
                "You can return items within 30 days.\n\nShoes must be unworn.",
            ),
            article(
                "delivery.md",
                "How long does delivery take?",
                &["when will my parcel arrive", "how long is shipping"],
                "Standard delivery takes 2-4 working days.",
            ),
        ];
        let vars = ["package".to_string()];
        KnowledgeBase::build(
            Path::new("kb"),
            articles,
            &Synonyms::new([("parcel", &vars[..])]),
        )
        .unwrap()
    }

    #[test]
    fn best_article_first_with_confidence() {
        let kb = kb();
        let s = kb.search("how long does shipping take", 10);
        assert_eq!(kb.articles[s.hits[0].article].id, "delivery.md");
        assert!(s.hits[0].confidence > 0.5, "{:?}", s.hits[0]);
    }

    #[test]
    fn synonyms_and_typos_reach_the_article() {
        let kb = kb();
        let s = kb.search("when will my packge arive", 10);
        assert_eq!(kb.articles[s.hits[0].article].id, "delivery.md");
        assert!(s.corrections.iter().any(|(_, to)| to == "arriv"), "{s:?}");
    }

    #[test]
    fn unknown_words_lower_confidence() {
        let kb = kb();
        let on_topic = kb.search("how many days to return an item", 10).hits[0].confidence;
        let off_topic = kb.search("how many days until the football world cup final", 10);
        let off = off_topic.hits.first().map_or(0.0, |h| h.confidence);
        assert!(off < on_topic / 2.0, "{off} vs {on_topic}");
    }

    #[test]
    fn a_tied_correction_goes_the_same_way_every_load() {
        // "rice" is one letter from "dice" and from "nice", each in one
        // article: the first in the content wins, however the maps hash.
        for _ in 0..20 {
            let kb = KnowledgeBase::build(
                Path::new("kb"),
                vec![
                    article(
                        "dice.md",
                        "Roll the dice",
                        &["throw dice for me"],
                        "Rolled.",
                    ),
                    article("bye.md", "Goodbye", &["have a nice day"], "Bye."),
                ],
                &Synonyms::new([]),
            )
            .unwrap();
            let s = kb.search("rice", 10);
            assert_eq!(
                s.corrections,
                vec![("rice".to_string(), "dice".to_string())]
            );
        }
    }

    #[test]
    fn a_dot_product_counts_the_shared_terms_only() {
        // 67, 74 and 194 pass the filter as 3, 10 and 130 do (the same bit),
        // and must still not count.
        let q = QueryVector::new([(3, 1.0), (10, 2.0), (130, 4.0)].into_iter());
        assert_eq!(q.dot(&[3, 10, 130]), 7.0);
        assert_eq!(q.dot(&[67, 74, 194]), 0.0);
        assert_eq!(q.dot(&[1, 10, 67, 200]), 2.0);
        assert_eq!(q.dot(&[]), 0.0);
        let empty = QueryVector::new(std::iter::empty());
        assert_eq!(empty.dot(&[0, 64, 3]), 0.0);
    }

    #[test]
    fn corrections_are_one_edit_only() {
        let one = |a: &str, b: &str| one_edit_apart(&a.chars().collect::<Vec<_>>(), b);
        assert!(one("ariv", "arriv") && one("recieve", "receive") && one("dream", "cream"));
        assert!(!one("naval", "avail") && !one("ab", "ba ") && !one("term", "tram"));
    }

    #[test]
    fn excerpt_is_the_matching_paragraph() {
        let kb = kb();
        let terms = kb.search("are worn shoes ok", 10).terms;
        assert_eq!(kb.excerpt(0, &terms, 200), "Shoes must be unworn.");
    }

    #[test]
    fn truncation_prefers_sentence_ends() {
        assert_eq!(
            truncate_at_boundary("One two. Three four five", 12),
            "One two."
        );
        assert_eq!(truncate_at_boundary("alpha beta gamma", 12), "alpha beta…");
    }
}
