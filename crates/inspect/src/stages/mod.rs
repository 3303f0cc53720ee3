//! The stages.

pub mod auth;
pub mod bayes;
pub mod brands;
pub mod bulk;
pub mod contact;
pub mod content;
pub mod dnsbl;
pub mod headers;
pub mod malware;
pub mod phish;
pub mod phrases;
pub mod ratware;
pub mod urls;

/// The stages that need no service, no model and no configuration: content and header
/// shape, phrases, link tricks, bulk-mail markers and bulk-mailer marks. (One list, so the SMTP path, `check`
/// and the fuzz targets run the same rules.)
pub fn plain_rules() -> Vec<std::sync::Arc<dyn crate::Stage>> {
    vec![
        std::sync::Arc::new(content::ContentRules),
        std::sync::Arc::new(phrases::Phrases),
        std::sync::Arc::new(urls::UrlTricks),
        std::sync::Arc::new(bulk::BulkMarkers),
        std::sync::Arc::new(ratware::Ratware),
    ]
}
