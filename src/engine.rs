//! The decision: a pure function of (content snapshot, conversation context,
//! visitor text, thresholds) that says how the bot replies, and why.
//!
//! Order: sensitive content escalates (and is redacted); an explicit request
//! for a person escalates; an intent answers (or asks for a missing slot); the
//! knowledge base answers when confident and clearly ahead, offers the close
//! candidates when not sure, and otherwise the bot falls back; after N
//! fallbacks in a row the conversation escalates.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::content::Content;
use crate::intents::{fill, Action, MatchedBy};
use crate::text;

pub mod cache;

/// What kind of reply a decision is (the wire's `reply.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Answer,
    Clarify,
    Fallback,
    Escalate,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Answer => "answer",
            Kind::Clarify => "clarify",
            Kind::Fallback => "fallback",
            Kind::Escalate => "escalate",
        }
    }
}

/// Why a conversation went to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    Requested,
    Sensitive,
    RepeatedFallback,
    NegativeFeedback,
    IntentRule,
}

impl EscalationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationReason::Requested => "requested",
            EscalationReason::Sensitive => "sensitive",
            EscalationReason::RepeatedFallback => "repeated_fallback",
            EscalationReason::NegativeFeedback => "negative_feedback",
            EscalationReason::IntentRule => "intent_rule",
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Intent,
    Article,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Intent => "intent",
            SourceKind::Article => "article",
        }
    }
}

/// A quick reply offered with a reply: the label shown and the value sent back
/// in a `choice` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    pub label: String,
    pub value: String,
}

/// What the engine remembers between messages of one conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Fallback replies since the last answer.
    #[serde(default)]
    pub fallbacks_in_a_row: u32,
    /// An intent waiting for a slot value.
    #[serde(default)]
    pub pending_slot: Option<PendingSlot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSlot {
    pub intent: String,
    pub slot: String,
}

/// How an intent scored, for the explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentScore {
    pub id: String,
    pub priority: i32,
    /// "pattern" or "keyword".
    pub by: String,
    /// The pattern or keyword that matched.
    pub rule: String,
}

/// How an article scored, for the explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArticleScore {
    pub id: String,
    pub confidence: f32,
    pub best_phrase: String,
    pub best_phrase_score: f32,
    pub centroid_score: f32,
    pub bm25: f32,
}

/// Every number and rule behind a decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The rule that decided, in words.
    pub rule: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sensitive: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub intents: Vec<IntentScore>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub articles: Vec<ArticleScore>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub terms: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub corrections: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub unknown_terms: Vec<String>,
    pub answer_threshold: f32,
    pub clarify_threshold: f32,
    pub clarify_margin: f32,
    pub fallbacks_in_a_row: u32,
    /// The slot whose question the visitor's text answered, when it did. Its
    /// value may be personal (an order number, an email address), so such a
    /// decision is never remembered ([`cache`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub answered_slot: Option<String>,
}

/// The engine's verdict on one visitor message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub kind: Kind,
    pub text: String,
    pub source: Option<Source>,
    pub quick_replies: Vec<QuickReply>,
    pub escalation: Option<EscalationReason>,
    /// Confidence of the source (1.0 for rules).
    pub score: f32,
    /// The visitor's text with sensitive matches redacted: the only form that is stored or logged.
    pub redacted: String,
    pub explanation: Explanation,
    /// The context after this decision.
    pub next: Context,
}

const DEFAULT_SENSITIVE: &str =
    "Thank you for telling us. I'm bringing in a member of our team who can help with this.";
const DEFAULT_REQUESTED: &str = "Of course. I'm bringing in a member of our team; they will see this conversation, so you won't need to repeat anything.";
const FALLBACK: &str = "Sorry, I don't have an answer for that. Could you put it another way? You can also ask to talk to a person.";
const REPEATED_FALLBACK: &str = "I'm not able to answer that, so I'm bringing in a member of our team. They will see this conversation.";
const NEGATIVE: &str =
    "Sorry that didn't help. Could you tell me a bit more, or would you like to talk to a person?";
const NEGATIVE_ESCALATE: &str =
    "Sorry I couldn't help. I'm bringing in a member of our team; they will see this conversation.";
const CLARIFY_MANY: &str = "I found a few articles that might help. Which one fits best?";
const CLARIFY_ONE: &str = "Is this what you're looking for?";

/// Prefix of a quick-reply value that picks an article.
pub const CHOICE_ARTICLE: &str = "article:";
/// Prefix of a quick-reply value that picks an intent.
pub const CHOICE_INTENT: &str = "intent:";

fn thresholds(cfg: &EngineConfig, ctx: &Context) -> Explanation {
    Explanation {
        answer_threshold: cfg.answer_threshold,
        clarify_threshold: cfg.clarify_threshold,
        clarify_margin: cfg.clarify_margin,
        fallbacks_in_a_row: ctx.fallbacks_in_a_row,
        ..Explanation::default()
    }
}

/// A decision, shared, with what every reply made from it needs as JSON,
/// serialized once: a remembered decision is given again for every message
/// that repeats its text.
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Arc<Decision>,
    /// The explanation, as the store keeps it ([`crate::store::packed`]).
    pub explanation_packed: Arc<[u8]>,
    /// The source and the quick replies, as the store keeps them.
    pub source_json: Option<Arc<str>>,
    pub quick_replies_json: Arc<str>,
    /// The reply frame's members after its answer id
    /// ([`crate::protocol::reply_members`]).
    pub reply_members: Arc<str>,
}

impl Decided {
    pub fn new(decision: Decision) -> Decided {
        let explanation_packed = crate::store::packed::pack(
            &serde_json::to_string(&decision.explanation).expect("explanation serializes"),
        );
        let source_json = decision
            .source
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("source serializes").into());
        let quick_replies_json = serde_json::to_string(&decision.quick_replies)
            .expect("quick replies serialize")
            .into();
        let reply_members = crate::protocol::reply_members(
            decision.kind,
            &decision.text,
            decision.source.as_ref(),
            &decision.quick_replies,
        )
        .into();
        Decided {
            decision: Arc::new(decision),
            explanation_packed: explanation_packed.into(),
            source_json,
            quick_replies_json,
            reply_members,
        }
    }
}

impl From<Decision> for Decided {
    fn from(decision: Decision) -> Decided {
        Decided::new(decision)
    }
}

/// Decides the reply to a visitor's message as `decide` does, giving the
/// decision `content` remembers for the same text in the same context when
/// there is one (and then `true`). The server decides with one configuration
/// for as long as it runs, so `cfg` is not part of what is remembered.
pub fn decide_remembered(
    content: &Content,
    ctx: &Context,
    text: &str,
    cfg: &EngineConfig,
) -> (Decided, bool) {
    if let Some(d) = content.decisions.get(ctx, text) {
        return (d, true);
    }
    let d = Decided::new(decide(content, ctx, text, cfg));
    content.decisions.put(ctx, text, &d);
    (d, false)
}

/// Decides the reply to a visitor's message.
pub fn decide(content: &Content, ctx: &Context, text: &str, cfg: &EngineConfig) -> Decision {
    let intents = &content.intents;
    let mut expl = thresholds(cfg, ctx);

    // 1. Sensitive content.
    let scan = intents.sensitive.scan(text);
    let redacted = scan.redacted;
    if let Some(&first) = scan.rules.first() {
        let rules = &intents.sensitive.rules;
        expl.sensitive = scan.rules.iter().map(|&i| rules[i].id.clone()).collect();
        expl.rule = format!("sensitive rule {:?} matched", rules[first].id);
        let reply = rules[first]
            .response
            .clone()
            .or_else(|| intents.sensitive.response.clone())
            .unwrap_or_else(|| DEFAULT_SENSITIVE.to_string());
        return escalate(EscalationReason::Sensitive, reply, None, redacted, expl);
    }

    let clean = intents.synonyms.apply(&text::tidy(&redacted));
    let matches = intents.find(&clean);
    expl.intents = matches
        .iter()
        .map(|m| {
            let i = &intents.intents[m.intent];
            let (by, rule) = match &m.by {
                MatchedBy::Pattern(p) => ("pattern", p.clone()),
                MatchedBy::Keyword(k) => ("keyword", k.clone()),
            };
            IntentScore {
                id: i.id.clone(),
                priority: i.priority,
                by: by.into(),
                rule,
            }
        })
        .collect();

    // 2. An explicit request for a person.
    if let Some(m) = matches.iter().find(|m| {
        let i = &intents.intents[m.intent];
        i.action == Action::Escalate && i.reason == "requested"
    }) {
        let i = &intents.intents[m.intent];
        expl.rule = format!("intent {:?} asks for a person", i.id);
        let source = intent_source(&i.id);
        return escalate(
            EscalationReason::Requested,
            i.response.clone(),
            Some(source),
            redacted,
            expl,
        );
    }

    // A slot the previous reply asked for. The answer to "what's your order
    // number?" may also match another intent's pattern (a bare number, say);
    // the question just asked wins unless a higher-priority intent matched.
    if let Some(pending) = &ctx.pending_slot {
        if let Some(intent) = intents.get(&pending.intent) {
            let outranked = matches
                .first()
                .is_some_and(|m| intents.intents[m.intent].priority > intent.priority);
            if !outranked {
                let slot = intent.slots.iter().find(|s| s.name == pending.slot);
                if let Some(value) = slot.and_then(|s| s.find(&clean)) {
                    expl.rule = format!(
                        "slot {:?} of intent {:?} filled from the reply",
                        pending.slot, intent.id
                    );
                    expl.answered_slot = Some(pending.slot.clone());
                    let mut values = vec![(pending.slot.clone(), value)];
                    fill_slots(intent, &clean, &mut values);
                    return intent_answer(intent, &values, redacted, expl);
                }
            }
        }
    }

    // 3. Intents.
    if let Some(m) = matches.first() {
        let intent = &intents.intents[m.intent];
        let rule = format!("intent {:?} matched by {}", intent.id, describe(&m.by));
        return respond_with_intent(intent, m.captures.clone(), &clean, redacted, expl, rule);
    }

    // 4. The knowledge base.
    let kb = &content.kb;
    let mut search = kb.search_prepared(&clean, cfg.candidates);
    expl.terms = std::mem::take(&mut search.terms);
    expl.corrections = std::mem::take(&mut search.corrections);
    expl.unknown_terms = std::mem::take(&mut search.unknown);
    expl.articles = search
        .hits
        .iter()
        .take(5)
        .map(|h| {
            let a = &kb.articles[h.article];
            ArticleScore {
                id: a.id.clone(),
                confidence: round3(h.confidence),
                best_phrase: a.phrase(h.best_phrase).to_string(),
                best_phrase_score: round3(h.best_phrase_score),
                centroid_score: round3(h.centroid_score),
                bm25: round3(h.bm25),
            }
        })
        .collect();
    if let Some(top) = search.hits.first() {
        let runner_up = search.hits.get(1).map_or(0.0, |h| h.confidence);
        let lead = top.confidence - runner_up;
        let confident = top.confidence >= cfg.answer_threshold && lead >= cfg.clarify_margin;
        let top_intent = kb.articles[top.article]
            .intent_id()
            .and_then(|id| intents.get(id));
        if let (true, Some(intent)) = (confident, top_intent) {
            let a = &kb.articles[top.article];
            let rule = format!(
                "intent {:?}: close to its example {:?}, confidence {:.3} >= answer threshold {:.2}, lead {:.3} >= margin {:.2}",
                intent.id,
                a.phrase(top.best_phrase),
                top.confidence,
                cfg.answer_threshold,
                lead,
                cfg.clarify_margin
            );
            return respond_with_intent(intent, Vec::new(), &clean, redacted, expl, rule);
        }
        if confident {
            let a = &kb.articles[top.article];
            expl.rule = format!(
                "article {:?}: confidence {:.3} >= answer threshold {:.2}, lead {:.3} >= margin {:.2}",
                a.id, top.confidence, cfg.answer_threshold, lead, cfg.clarify_margin
            );
            let text = kb.excerpt(top.article, &expl.terms, cfg.excerpt_chars);
            return article_answer(kb, top.article, text, top.confidence, redacted, expl);
        }
        if top.confidence >= cfg.clarify_threshold {
            let floor = cfg
                .clarify_threshold
                .max(top.confidence - 2.0 * cfg.clarify_margin);
            // An article is offered by its title, an intent by its first example
            // (a visitor's phrasing, which reads well as a suggested question).
            let choices: Vec<QuickReply> = search
                .hits
                .iter()
                .filter(|h| h.confidence >= floor)
                .take(cfg.max_choices)
                .map(|h| {
                    let a = &kb.articles[h.article];
                    QuickReply {
                        label: a.title.clone(),
                        value: match a.intent_id() {
                            Some(intent) => format!("{CHOICE_INTENT}{intent}"),
                            None => format!("{CHOICE_ARTICLE}{}", a.id),
                        },
                    }
                })
                .collect();
            expl.rule = format!(
                "best article confidence {:.3} (lead {:.3}): below answer threshold {:.2} or margin {:.2}, at or above clarify threshold {:.2}; offering {} choice(s)",
                top.confidence,
                lead,
                cfg.answer_threshold,
                cfg.clarify_margin,
                cfg.clarify_threshold,
                choices.len()
            );
            {
                return Decision {
                    kind: Kind::Clarify,
                    text: if choices.len() == 1 {
                        CLARIFY_ONE
                    } else {
                        CLARIFY_MANY
                    }
                    .to_string(),
                    source: None,
                    quick_replies: choices,
                    escalation: None,
                    score: top.confidence,
                    redacted,
                    explanation: expl,
                    next: Context::default(),
                };
            }
        }
    }

    // 5. Fallback, escalating after N in a row.
    let fallbacks = ctx.fallbacks_in_a_row + 1;
    let best = search.hits.first().map_or(0.0, |h| h.confidence);
    if cfg.fallbacks_before_escalation > 0 && fallbacks >= cfg.fallbacks_before_escalation {
        expl.rule = format!(
            "no intent and no article above the clarify threshold ({best:.3} < {:.2}); fallback {fallbacks} in a row reaches the limit of {}",
            cfg.clarify_threshold, cfg.fallbacks_before_escalation
        );
        return escalate(
            EscalationReason::RepeatedFallback,
            REPEATED_FALLBACK.into(),
            None,
            redacted,
            expl,
        );
    }
    expl.rule = format!(
        "no intent and no article above the clarify threshold ({best:.3} < {:.2}); fallback {fallbacks} in a row",
        cfg.clarify_threshold
    );
    Decision {
        kind: Kind::Fallback,
        text: FALLBACK.into(),
        source: None,
        quick_replies: vec![QuickReply {
            label: "Talk to a person".into(),
            value: "request_human".into(),
        }],
        escalation: None,
        score: best,
        redacted,
        explanation: expl,
        next: Context {
            fallbacks_in_a_row: fallbacks,
            pending_slot: None,
        },
    }
}

/// Decides the reply to a quick reply the visitor picked. Values that name an
/// article or intent answer from it directly; anything else is read as text.
pub fn choose(content: &Content, ctx: &Context, value: &str, cfg: &EngineConfig) -> Decision {
    let mut expl = thresholds(cfg, ctx);
    if let Some(id) = value.strip_prefix(CHOICE_ARTICLE) {
        if let Some(idx) = content.kb.get(id) {
            expl.rule = format!("visitor chose article {id:?}");
            let a = &content.kb.articles[idx];
            let text = crate::kb::truncate_at_boundary(
                a.paragraphs.first().map(String::as_str).unwrap_or(""),
                cfg.excerpt_chars,
            );
            return article_answer(&content.kb, idx, text, 1.0, value.to_string(), expl);
        }
    }
    if let Some(id) = value.strip_prefix(CHOICE_INTENT) {
        if let Some(intent) = content.intents.get(id) {
            let rule = format!("visitor chose intent {id:?}");
            return respond_with_intent(intent, Vec::new(), "", value.to_string(), expl, rule);
        }
    }
    decide(content, ctx, value, cfg)
}

/// The decision for a visitor who asked for a person through the interface.
pub fn request_human(ctx: &Context, cfg: &EngineConfig) -> Decision {
    let mut expl = thresholds(cfg, ctx);
    expl.rule = "visitor asked for a person".into();
    escalate(
        EscalationReason::Requested,
        DEFAULT_REQUESTED.into(),
        None,
        String::new(),
        expl,
    )
}

/// The decision after a visitor marked an answer not helpful: it counts as a
/// fallback, and escalates (reason: negative feedback) when it reaches the limit.
pub fn negative_feedback(ctx: &Context, cfg: &EngineConfig) -> Decision {
    let mut expl = thresholds(cfg, ctx);
    let fallbacks = ctx.fallbacks_in_a_row + 1;
    if cfg.fallbacks_before_escalation > 0 && fallbacks >= cfg.fallbacks_before_escalation {
        expl.rule = format!(
            "answer marked not helpful; {fallbacks} unhelpful replies in a row reach the limit of {}",
            cfg.fallbacks_before_escalation
        );
        return escalate(
            EscalationReason::NegativeFeedback,
            NEGATIVE_ESCALATE.into(),
            None,
            String::new(),
            expl,
        );
    }
    expl.rule = "answer marked not helpful".into();
    Decision {
        kind: Kind::Fallback,
        text: NEGATIVE.into(),
        source: None,
        quick_replies: vec![QuickReply {
            label: "Talk to a person".into(),
            value: "request_human".into(),
        }],
        escalation: None,
        score: 0.0,
        redacted: String::new(),
        explanation: expl,
        next: Context {
            fallbacks_in_a_row: fallbacks,
            pending_slot: None,
        },
    }
}

/// The reply of a matched intent: escalate if that is its action, ask for a
/// missing slot, or answer with its response filled in.
fn respond_with_intent(
    intent: &crate::intents::Intent,
    captures: Vec<(String, String)>,
    clean: &str,
    redacted: String,
    mut expl: Explanation,
    rule: String,
) -> Decision {
    if intent.action == Action::Escalate {
        expl.rule = format!("{rule}; the intent escalates");
        return escalate(
            EscalationReason::IntentRule,
            intent.response.clone(),
            Some(intent_source(&intent.id)),
            redacted,
            expl,
        );
    }
    let mut values = captures;
    fill_slots(intent, clean, &mut values);
    let needed = crate::intents::placeholders(&intent.response);
    let missing = intent
        .slots
        .iter()
        .find(|s| !values.iter().any(|(k, _)| *k == s.name) && needed.contains(&s.name.as_str()));
    if let Some(slot) = missing {
        if let Some(prompt) = &slot.prompt {
            expl.rule = format!("{rule}; asking for slot {:?}", slot.name);
            return Decision {
                kind: Kind::Clarify,
                text: prompt.clone(),
                source: Some(intent_source(&intent.id)),
                quick_replies: Vec::new(),
                escalation: None,
                score: 1.0,
                redacted,
                explanation: expl,
                next: Context {
                    fallbacks_in_a_row: 0,
                    pending_slot: Some(PendingSlot {
                        intent: intent.id.clone(),
                        slot: slot.name.clone(),
                    }),
                },
            };
        }
    }
    expl.rule = rule;
    intent_answer(intent, &values, redacted, expl)
}

fn describe(by: &MatchedBy) -> String {
    match by {
        MatchedBy::Pattern(p) => format!("pattern {p:?}"),
        MatchedBy::Keyword(k) => format!("keyword {k:?}"),
    }
}

fn intent_source(id: &str) -> Source {
    Source {
        kind: SourceKind::Intent,
        id: id.to_string(),
        title: None,
        url: None,
    }
}

fn fill_slots(intent: &crate::intents::Intent, text: &str, values: &mut Vec<(String, String)>) {
    for slot in &intent.slots {
        if !values.iter().any(|(k, _)| *k == slot.name) {
            if let Some(v) = slot.find(text) {
                values.push((slot.name.clone(), v));
            }
        }
    }
}

fn intent_answer(
    intent: &crate::intents::Intent,
    values: &[(String, String)],
    redacted: String,
    explanation: Explanation,
) -> Decision {
    Decision {
        kind: Kind::Answer,
        text: fill(&intent.response, values),
        source: Some(intent_source(&intent.id)),
        quick_replies: intent
            .quick_replies
            .iter()
            .map(|q| QuickReply {
                label: q.clone(),
                value: q.clone(),
            })
            .collect(),
        escalation: None,
        score: 1.0,
        redacted,
        explanation,
        next: Context::default(),
    }
}

fn article_answer(
    kb: &crate::kb::KnowledgeBase,
    idx: usize,
    text: String,
    score: f32,
    redacted: String,
    explanation: Explanation,
) -> Decision {
    let a = &kb.articles[idx];
    Decision {
        kind: Kind::Answer,
        text,
        source: Some(Source {
            kind: SourceKind::Article,
            id: a.id.clone(),
            title: Some(a.title.clone()),
            url: a.url.clone(),
        }),
        quick_replies: Vec::new(),
        escalation: None,
        score,
        redacted,
        explanation,
        next: Context::default(),
    }
}

fn escalate(
    reason: EscalationReason,
    text: String,
    source: Option<Source>,
    redacted: String,
    explanation: Explanation,
) -> Decision {
    Decision {
        kind: Kind::Escalate,
        text,
        source,
        quick_replies: Vec::new(),
        escalation: Some(reason),
        score: 1.0,
        redacted,
        explanation,
        next: Context::default(),
    }
}

fn round3(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intents::Intents;
    use crate::kb::Article;
    use std::path::Path;

    const INTENTS: &str = r#"
[[intent]]
id = "human"
action = "escalate"
reason = "requested"
priority = 20
patterns = ['\b(?:talk|speak) to (?:a )?(?:human|person|agent)\b']
response = "Getting a person."

[[intent]]
id = "complaint"
action = "escalate"
priority = 20
keywords = ["formal complaint"]
response = "Passing this on."

[[intent]]
id = "order_status"
priority = 10
patterns = ["where(?:'s| is) my order", '^\s*FD-?\d{6}\s*$']
examples = ["where is my order FD-123456", "has my order shipped yet", "any news about my order", "FD-123456"]
response = "Order {order_number} is on its way."
[[intent.slots]]
name = "order_number"
pattern = '\b(FD-?\d{6})\b'
prompt = "What's your order number?"

[[intent]]
id = "cancel_order"
priority = 10
patterns = ['\bcancel my order\b']
response = "Order {order_number} is cancelled."
[[intent.slots]]
name = "order_number"
pattern = '\b(FD-?\d{6})\b'
prompt = "Which order should I cancel?"

[[intent]]
id = "greeting"
patterns = ['^(?:hi|hello)\W*$']
response = "Hello!"

[sensitive]
response = "A person will help."
[[sensitive.rule]]
id = "card"
patterns = ['\b(?:\d[ -]?){12,18}\d\b']
luhn = true
redact = true
"#;

    fn content() -> Content {
        let a = |id: &str, title: &str, qs: &str, body: &str| {
            Article::parse(
                id.into(),
                &format!("---\ntitle: \"{title}\"\nquestions: [{qs}]\n---\n{body}\n"),
                Path::new(id),
            )
            .unwrap()
        };
        let intents = Intents::compile(INTENTS, Path::new("intents.toml")).unwrap();
        let articles = vec![
            a(
                "returns/policy.md",
                "Return policy",
                "\"can i return an item\", \"how many days do i have to send something back\"",
                "You have 30 days to return items.",
            ),
            a(
                "returns/label.md",
                "Return label",
                "\"where do i get a return label\", \"print return label\"",
                "Download the label from your account.",
            ),
            a(
                "shipping/times.md",
                "Delivery times",
                "\"how long does delivery take\", \"when will my parcel arrive\"",
                "Delivery takes 2-4 working days.",
            ),
        ];
        Content::build(intents, articles, Path::new("kb")).unwrap()
    }

    fn cfg() -> EngineConfig {
        EngineConfig::default()
    }

    #[test]
    fn table_of_decisions() {
        let c = content();
        let ctx = Context::default();
        // (text, kind, source id, escalation)
        let cases: &[(&str, Kind, Option<&str>, Option<EscalationReason>)] = &[
            ("hello!", Kind::Answer, Some("greeting"), None),
            (
                "can I speak to a human please",
                Kind::Escalate,
                Some("human"),
                Some(EscalationReason::Requested),
            ),
            (
                "I want to make a formal complaint",
                Kind::Escalate,
                Some("complaint"),
                Some(EscalationReason::IntentRule),
            ),
            (
                "where is my order FD-123456",
                Kind::Answer,
                Some("order_status"),
                None,
            ),
            (
                "where is my order",
                Kind::Clarify,
                Some("order_status"),
                None,
            ),
            (
                "my card 4111 1111 1111 1111 was charged",
                Kind::Escalate,
                None,
                Some(EscalationReason::Sensitive),
            ),
            (
                "how long does delivery take",
                Kind::Answer,
                Some("shipping/times.md"),
                None,
            ),
            ("return", Kind::Clarify, None, None),
            ("what is the capital of peru", Kind::Fallback, None, None),
        ];
        for (text, kind, source, esc) in cases {
            let d = decide(&c, &ctx, text, &cfg());
            assert_eq!(d.kind, *kind, "{text}: {:?}", d.explanation);
            assert_eq!(d.source.as_ref().map(|s| s.id.as_str()), *source, "{text}");
            assert_eq!(d.escalation, *esc, "{text}");
            assert!(!d.explanation.rule.is_empty(), "{text}");
        }
    }

    #[test]
    fn slot_is_filled_and_asked_for() {
        let c = content();
        let d = decide(
            &c,
            &Context::default(),
            "where is my order FD-123456?",
            &cfg(),
        );
        assert_eq!(d.text, "Order FD-123456 is on its way.");
        let ask = decide(&c, &Context::default(), "where's my order", &cfg());
        assert_eq!(ask.text, "What's your order number?");
        let filled = decide(&c, &ask.next, "it's fd-654321", &cfg());
        assert_eq!(filled.text, "Order fd-654321 is on its way.");
        assert_eq!(filled.next, Context::default());
    }

    #[test]
    fn a_message_close_to_an_example_reaches_the_intent() {
        let c = content();
        // No pattern matches, but the wording is close to an example.
        let d = decide(
            &c,
            &Context::default(),
            "has my order shipped yet FD-222333",
            &cfg(),
        );
        assert_eq!(
            d.source.as_ref().map(|s| s.id.as_str()),
            Some("order_status"),
            "{:?}",
            d.explanation
        );
        assert_eq!(d.text, "Order FD-222333 is on its way.");
        assert!(
            d.explanation.rule.contains("close to its example"),
            "{}",
            d.explanation.rule
        );
        // Choosing the intent from a clarify asks for its missing slot.
        let chosen = choose(&c, &Context::default(), "intent:order_status", &cfg());
        assert_eq!(chosen.text, "What's your order number?");
    }

    #[test]
    fn the_slot_just_asked_for_wins_over_an_equal_intent() {
        let c = content();
        let ask = decide(&c, &Context::default(), "please cancel my order", &cfg());
        assert_eq!(ask.text, "Which order should I cancel?");
        // A bare order number also matches order_status (same priority).
        let filled = decide(&c, &ask.next, "FD-987654", &cfg());
        assert_eq!(
            filled.text, "Order FD-987654 is cancelled.",
            "{:?}",
            filled.explanation
        );
        // Without a pending slot the same text is an order-status question.
        let status = decide(&c, &Context::default(), "FD-987654", &cfg());
        assert_eq!(status.source.unwrap().id, "order_status");
    }

    #[test]
    fn card_numbers_are_redacted() {
        let c = content();
        let d = decide(&c, &Context::default(), "card 4111 1111 1111 1111", &cfg());
        assert_eq!(d.redacted, "card [redacted]");
    }

    #[test]
    fn fallbacks_escalate_after_the_limit() {
        let c = content();
        let first = decide(&c, &Context::default(), "quantum chromodynamics", &cfg());
        assert_eq!(first.kind, Kind::Fallback);
        assert_eq!(first.next.fallbacks_in_a_row, 1);
        let second = decide(&c, &first.next, "more quantum chromodynamics", &cfg());
        assert_eq!(second.kind, Kind::Escalate);
        assert_eq!(second.escalation, Some(EscalationReason::RepeatedFallback));
        let answered = decide(&c, &first.next, "how long does delivery take", &cfg());
        assert_eq!(answered.next.fallbacks_in_a_row, 0);
    }

    #[test]
    fn choosing_an_article_answers_from_it() {
        let c = content();
        let d = choose(&c, &Context::default(), "article:returns/label.md", &cfg());
        assert_eq!(d.kind, Kind::Answer);
        assert_eq!(d.text, "Download the label from your account.");
        assert_eq!(d.source.unwrap().title.as_deref(), Some("Return label"));
    }

    #[test]
    fn a_message_decided_twice_is_remembered_from_then_on() {
        let c = content();
        let ctx = Context::default();
        for text in [
            "how long does delivery take",
            "return",
            "hello!",
            "what is the capital of peru",
        ] {
            let (first, remembered) = decide_remembered(&c, &ctx, text, &cfg());
            assert!(!remembered, "{text}");
            assert_eq!(*first.decision, decide(&c, &ctx, text, &cfg()), "{text}");
            let explained = serde_json::to_string(&first.decision.explanation).unwrap();
            let packed = rusqlite::types::ValueRef::Blob(&first.explanation_packed);
            assert_eq!(
                crate::store::packed::unpack(packed).unwrap(),
                explained,
                "{text}"
            );
            // The second time it is decided again, and kept.
            let (second, remembered) = decide_remembered(&c, &ctx, text, &cfg());
            assert!(!remembered, "{text}");
            assert_eq!(second.decision, first.decision, "{text}");
            for _ in 0..3 {
                let (again, remembered) = decide_remembered(&c, &ctx, text, &cfg());
                assert!(remembered, "{text}");
                assert_eq!(again.decision, first.decision, "{text}");
                assert_eq!(again.explanation_packed, first.explanation_packed, "{text}");
            }
        }
        // The exact text: another spelling is decided afresh.
        let (_, remembered) = decide_remembered(&c, &ctx, "How long does delivery take", &cfg());
        assert!(!remembered);
    }

    #[test]
    fn texts_decided_once_are_not_kept() {
        let c = content();
        for i in 0..1_000 {
            let text = format!("question number {i}");
            assert!(!decide_remembered(&c, &Context::default(), &text, &cfg()).1);
        }
        assert!(c.decisions.is_empty());
    }

    #[test]
    fn a_remembered_decision_is_only_given_in_the_context_it_was_made_in() {
        let c = content();
        let fresh = Context::default();
        let text = "quantum chromodynamics";
        let (first, _) = decide_remembered(&c, &fresh, text, &cfg());
        let first = first.decision;
        assert_eq!(first.kind, Kind::Fallback);
        // The same text after a fallback reaches the limit and escalates.
        let (second, remembered) = decide_remembered(&c, &first.next, text, &cfg());
        assert!(!remembered);
        assert_eq!(second.decision.kind, Kind::Escalate);
        assert_eq!(second.decision.explanation.fallbacks_in_a_row, 1);
        // Remembered for the context after a fallback; in a fresh context it
        // is decided again, and from then on remembered for both.
        let (again, remembered) = decide_remembered(&c, &fresh, text, &cfg());
        assert!(!remembered);
        assert_eq!(again.decision.kind, Kind::Fallback);
        let (again, remembered) = decide_remembered(&c, &fresh, text, &cfg());
        assert!(remembered);
        assert_eq!(again.decision.kind, Kind::Fallback);
        let (again, remembered) = decide_remembered(&c, &first.next, text, &cfg());
        assert!(remembered);
        assert_eq!(again.decision.kind, Kind::Escalate);
        assert_eq!(c.decisions.len(), 1, "one text, two contexts");
    }

    #[test]
    fn a_text_is_remembered_in_a_bounded_number_of_contexts() {
        let c = content();
        let never = EngineConfig {
            fallbacks_before_escalation: 0,
            ..cfg()
        };
        let mut ctx = Context::default();
        for _ in 0..cache::CONTEXTS_PER_TEXT * 3 {
            let (d, remembered) = decide_remembered(&c, &ctx, "quantum chromodynamics", &never);
            assert!(!remembered);
            assert_eq!(d.decision.kind, Kind::Fallback);
            ctx = d.decision.next.clone();
        }
        // The latest contexts are remembered, the first ones are not.
        let latest = Context {
            fallbacks_in_a_row: ctx.fallbacks_in_a_row - 1,
            ..Context::default()
        };
        assert!(decide_remembered(&c, &latest, "quantum chromodynamics", &never).1);
        let first = Context::default();
        assert!(!decide_remembered(&c, &first, "quantum chromodynamics", &never).1);
    }

    #[test]
    fn sensitive_texts_and_long_texts_are_not_remembered() {
        let c = content();
        let card = "card 4111 1111 1111 1111";
        for _ in 0..2 {
            let (d, remembered) = decide_remembered(&c, &Context::default(), card, &cfg());
            assert!(!remembered);
            assert_eq!(d.decision.redacted, "card [redacted]");
        }
        let long = "delivery ".repeat(cache::MAX_TEXT / 9 + 1);
        for _ in 0..2 {
            assert!(!decide_remembered(&c, &Context::default(), &long, &cfg()).1);
        }
        assert!(c.decisions.is_empty());
    }

    #[test]
    fn a_conversation_waiting_for_a_slot_remembers_what_does_not_answer_it() {
        let c = content();
        let asking = decide(&c, &Context::default(), "where is my order", &cfg());
        let waiting = asking.next;
        assert!(waiting.pending_slot.is_some());
        // The slot's value fills the slot and is never kept, however often
        // it comes (a resend, say): it may be personal.
        for _ in 0..3 {
            let (filled, remembered) = decide_remembered(&c, &waiting, "FD-123456", &cfg());
            assert!(!remembered);
            assert_eq!(filled.decision.kind, Kind::Answer);
            assert_eq!(
                filled.decision.explanation.answered_slot.as_deref(),
                Some("order_number")
            );
        }
        assert!(c.decisions.is_empty());
        // A question asked instead is remembered for the wait once it comes
        // again, with the decision it would get afresh there.
        let question = "can i return shoes i wore once";
        let fresh = decide(&c, &waiting, question, &cfg());
        for _ in 0..2 {
            assert!(!decide_remembered(&c, &waiting, question, &cfg()).1);
        }
        let (again, remembered) = decide_remembered(&c, &waiting, question, &cfg());
        assert!(remembered);
        assert_eq!(again.decision.text, fresh.text);
        assert_eq!(again.decision.next, fresh.next);
        assert_eq!(again.decision.explanation.rule, fresh.explanation.rule);
        // Not in a conversation that waits for nothing: that is another context.
        assert!(!decide_remembered(&c, &Context::default(), question, &cfg()).1);
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_what_is_asked_often() {
        let c = content();
        let ctx = Context::default();
        let often = "how long does delivery take";
        for i in 0..cache::CAPACITY * 3 {
            // Each text twice, so that it is kept.
            for _ in 0..2 {
                decide_remembered(&c, &ctx, &format!("question number {i}"), &cfg());
            }
            if i % 100 == 0 {
                decide_remembered(&c, &ctx, often, &cfg());
            }
            assert!(c.decisions.len() <= cache::CAPACITY);
        }
        assert!(c.decisions.len() >= cache::CAPACITY / 2);
        assert!(decide_remembered(&c, &ctx, often, &cfg()).1);
        assert!(!decide_remembered(&c, &ctx, "question number 0", &cfg()).1);
    }
}
