//! The classifier stage: naive Bayes and the byte n-gram logistic regression, each giving
//! its own band of evidence. It classifies with the recipients' tenant model when that is
//! trained, else with the global model.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::bayes::{Model, tokenize};
use crate::evidence::{Evidence, Symbol};
use crate::ngram::{Weights, features};
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

/// Tenant id of the global model.
pub const GLOBAL: i64 = 0;

/// One trained model: Bayes token counts and, when it has learned any, n-gram weights.
struct Trained {
    bayes: Model,
    ngram: Option<Weights>,
}

/// The classifier stage; models are swapped in whole when the store's copy changes.
#[derive(Default)]
pub struct Bayes {
    models: RwLock<HashMap<i64, Arc<Trained>>>,
}

impl Bayes {
    /// A stage with no model (it gives no evidence until one is trained).
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs (or replaces) the Bayes counts of `tenant` (`GLOBAL` for the global one),
    /// with no n-gram weights.
    pub fn set_model(&self, tenant: i64, model: Model) {
        self.set_models(tenant, model, None);
    }

    /// Installs (or replaces) both classifiers of `tenant` (`GLOBAL` for the global one).
    pub fn set_models(&self, tenant: i64, bayes: Model, ngram: Option<Weights>) {
        self.models
            .write()
            .expect("bayes lock poisoned")
            .insert(tenant, Arc::new(Trained { bayes, ngram }));
    }

    fn model_for(&self, tenant: Option<i64>) -> Option<(i64, Arc<Trained>)> {
        let models = self.models.read().expect("bayes lock poisoned");
        let trained = |t: &i64| {
            models
                .get(t)
                .filter(|m| m.bayes.is_trained())
                .map(|m| (*t, m.clone()))
        };
        tenant
            .and_then(|t| trained(&t))
            .or_else(|| trained(&GLOBAL))
    }

    /// The evidence for one message.
    pub fn check(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        let Some((which, model)) = self.model_for(env.tenant) else {
            return Vec::new();
        };
        let name = if which == GLOBAL {
            "global".to_string()
        } else {
            format!("tenant {which}")
        };
        let tokens = tokenize(msg);
        let mut out = Vec::new();
        if let Some(p) = model.bayes.classify(&tokens)
            && let Some(symbol) = band(p)
        {
            out.push(Evidence::new(
                symbol,
                format!("spam probability {p:.4} ({name} model)"),
            ));
        }
        if let Some(w) = &model.ngram {
            let p = w.predict(&features(msg, &tokens));
            if let Some(symbol) = ngram_band(p) {
                out.push(Evidence::new(
                    symbol,
                    format!("n-gram spam probability {p:.4} ({name} model)"),
                ));
            }
        }
        out
    }
}

/// The symbol for an n-gram spam probability (none in the undecided middle).
pub fn ngram_band(p: f64) -> Option<Symbol> {
    Some(if p >= 0.99 {
        Symbol::LrSpam99
    } else if p >= 0.9 {
        Symbol::LrSpam90
    } else if p >= 0.7 {
        Symbol::LrSpam70
    } else if p <= 0.05 {
        Symbol::LrHam
    } else {
        return None;
    })
}

/// The symbol for a spam probability (none in the undecided middle).
pub fn band(p: f64) -> Option<Symbol> {
    Some(if p >= 0.999 {
        Symbol::BayesSpam999
    } else if p >= 0.99 {
        Symbol::BayesSpam99
    } else if p >= 0.95 {
        Symbol::BayesSpam95
    } else if p >= 0.8 {
        Symbol::BayesSpam80
    } else if p >= 0.6 {
        Symbol::BayesSpam60
    } else if p <= 0.1 {
        Symbol::BayesHam
    } else {
        return None;
    })
}

impl SyncStage for Bayes {
    fn stage_name(&self) -> &'static str {
        "bayes"
    }

    fn evidence(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        self.check(msg, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayes::MIN_TRAINED;
    use crate::view::ViewLimits;

    fn view(raw: &str) -> MessageView<'_> {
        MessageView::parse(raw.as_bytes(), &ViewLimits::default()).0
    }

    fn env(tenant: Option<i64>) -> Envelope {
        Envelope {
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "h".into(),
            mail_from: "a@example.org".into(),
            rcpts: vec!["b@acme.example".into()],
            protected_domains: vec![],
            tenant,
            ..Default::default()
        }
    }

    const SPAM: &str = "Subject: cheap pills\r\n\r\ncheap pills casino winner prize claim\r\n";
    const HAM: &str = "Subject: meeting notes\r\n\r\nagenda minutes project schedule review\r\n";

    fn trained(spam_is_spam: bool) -> Model {
        let mut m = Model::default();
        for _ in 0..MIN_TRAINED {
            m.train(&tokenize(&view(SPAM)), spam_is_spam);
            m.train(&tokenize(&view(HAM)), !spam_is_spam);
        }
        m
    }

    #[test]
    fn no_model_no_evidence_then_bands() {
        let b = Bayes::new();
        assert!(b.check(&view(SPAM), &env(None)).is_empty());
        b.set_model(GLOBAL, trained(true));
        assert_eq!(
            b.check(&view(SPAM), &env(None))[0].symbol,
            Symbol::BayesSpam999
        );
        assert_eq!(b.check(&view(HAM), &env(None))[0].symbol, Symbol::BayesHam);
    }

    #[test]
    fn ngram_weights_give_their_own_evidence_beside_bayes() {
        let b = Bayes::new();
        let mut w = Weights::default();
        let f = |raw: &str| features(&view(raw), &tokenize(&view(raw)));
        for _ in 0..200 {
            w.learn(&f(SPAM), true, 0);
            w.learn(&f(HAM), false, 0);
        }
        b.set_models(GLOBAL, trained(true), Some(w.clone()));
        let symbols = |raw: &str| -> Vec<Symbol> {
            b.check(&view(raw), &env(None))
                .iter()
                .map(|e| e.symbol)
                .collect()
        };
        assert_eq!(symbols(SPAM), [Symbol::BayesSpam999, Symbol::LrSpam99]);
        assert_eq!(symbols(HAM), [Symbol::BayesHam, Symbol::LrHam]);
        // Weights without trained Bayes counts give nothing (the counts gate the model).
        b.set_models(GLOBAL, Model::default(), Some(w));
        assert!(symbols(SPAM).is_empty());
    }

    #[test]
    fn ngram_probability_bands() {
        let cases = [
            (0.995, Some(Symbol::LrSpam99)),
            (0.95, Some(Symbol::LrSpam90)),
            (0.8, Some(Symbol::LrSpam70)),
            (0.5, None),
            (0.1, None),
            (0.03, Some(Symbol::LrHam)),
        ];
        for (p, want) in cases {
            assert_eq!(ngram_band(p), want, "p = {p}");
        }
    }

    #[test]
    fn probability_bands() {
        let cases = [
            (0.9995, Some(Symbol::BayesSpam999)),
            (0.995, Some(Symbol::BayesSpam99)),
            (0.97, Some(Symbol::BayesSpam95)),
            (0.85, Some(Symbol::BayesSpam80)),
            (0.7, Some(Symbol::BayesSpam60)),
            (0.5, None),
            (0.2, None),
            (0.05, Some(Symbol::BayesHam)),
        ];
        for (p, want) in cases {
            assert_eq!(band(p), want, "p = {p}");
        }
    }

    #[test]
    fn a_trained_tenant_model_wins_over_the_global_one() {
        let b = Bayes::new();
        b.set_model(GLOBAL, trained(true));
        // Tenant 7 considers the "pills" mail wanted (say, a pharmacy).
        b.set_model(7, trained(false));
        assert_eq!(
            b.check(&view(SPAM), &env(Some(7)))[0].symbol,
            Symbol::BayesHam
        );
        assert!(
            b.check(&view(SPAM), &env(Some(7)))[0]
                .detail
                .contains("tenant 7 model")
        );
        assert_eq!(
            b.check(&view(SPAM), &env(Some(8)))[0].symbol,
            Symbol::BayesSpam999
        );
    }
}
