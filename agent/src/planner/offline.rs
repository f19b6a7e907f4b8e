//! The offline planner: deterministic, no network, no model.
//!
//! It reads the prompt as a list of features ("a notes app with email login,
//! markdown editor, tags, and images") and maps each phrase through a table of
//! known features — sign-in methods, collections with their access pattern,
//! storage, functions and screens. A phrase it does not know becomes a
//! collection of its own, owned by the user who creates each document, so a
//! prompt about recipes or invoices still gets a model, a rule and its tests.

use crate::plan::*;
use crate::planner::{PlanFuture, PlanRequest, Planner};

#[derive(Clone, Copy, Debug, Default)]
pub struct OfflinePlanner;

impl Planner for OfflinePlanner {
    fn name(&self) -> &str {
        "offline"
    }

    fn plan<'a>(&'a self, request: &'a PlanRequest) -> PlanFuture<'a> {
        Box::pin(async move {
            let plan = plan(&request.prompt);
            plan.validate()?;
            Ok(plan)
        })
    }
}

/// Words that describe the kind of software, not a thing in it.
const SOFTWARE_WORDS: &[&str] = &[
    "app",
    "application",
    "prototype",
    "site",
    "website",
    "service",
    "platform",
    "tool",
    "dashboard",
    "mvp",
    "system",
    "backend",
    "api",
    "web",
    "mobile",
    "simple",
    "small",
    "basic",
    "minimal",
    "new",
    "panel",
    "page",
    "pages",
    "screen",
    "screens",
    "feature",
    "features",
    "support",
    "ability",
    "real-time",
    "realtime",
    "live",
];

const FILLER_WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "with",
    "and",
    "or",
    "of",
    "for",
    "to",
    "in",
    "on",
    "my",
    "our",
    "some",
    "that",
    "lets",
    "let",
    "users",
    "user",
    "people",
    "can",
    "where",
    "which",
    "who",
    "they",
    "their",
    "build",
    "create",
    "make",
    "please",
    "i",
    "we",
    "want",
    "need",
    "using",
    "plus",
    "also",
    "including",
    "like",
    "it",
    "is",
];

/// The plan for a prompt. Pure: the same prompt always gives the same plan.
pub fn plan(prompt: &str) -> Plan {
    let text = without_redactions(prompt)
        .to_lowercase()
        .replace("e-commerce", "ecommerce");
    let mut builder = Builder::default();

    // The first sentence is the feature list; later sentences ("use the key
    // …", "deploy on Fridays") only add features the table knows, so a stray
    // noun there does not become a collection.
    let mut sentences: Vec<Vec<Vec<String>>> = text
        .split(['.', '\n', '!', '?'])
        .map(|sentence| {
            sentence
                .split([',', ';', ':', '(', ')'])
                .flat_map(|part| part.split(" and ").map(str::to_string).collect::<Vec<_>>())
                .flat_map(|part| part.split(" with ").map(str::to_string).collect::<Vec<_>>())
                .map(|phrase| {
                    phrase
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .filter(|w| !w.is_empty() && !FILLER_WORDS.contains(w))
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .filter(|words| !words.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|phrases| !phrases.is_empty())
        .collect();
    if sentences.is_empty() {
        sentences.push(Vec::new());
    }

    builder.app = app_name(&sentences[0]);
    for (index, phrases) in sentences.iter().enumerate() {
        for words in phrases {
            builder.phrase(words, index == 0);
        }
    }
    builder.finish()
}

/// The prompt without `[REDACTED:<rule>]` markers, whose rule names
/// (`github-pat`) would otherwise read as features.
fn without_redactions(prompt: &str) -> String {
    let mut out = String::with_capacity(prompt.len());
    let mut rest = prompt;
    while let Some(at) = rest.find("[REDACTED:") {
        out.push_str(&rest[..at]);
        rest = rest[at..].find(']').map_or("", |end| &rest[at + end + 1..]);
    }
    out.push_str(rest);
    out
}

fn has(words: &[String], stems: &[&str]) -> bool {
    words.iter().any(|w| stems.iter().any(|s| w.starts_with(s)))
}

fn app_name(phrases: &[Vec<String>]) -> String {
    let all: Vec<&String> = phrases.iter().flatten().collect();
    if all
        .iter()
        .any(|w| ["shop", "store", "ecommerce", "commerce", "storefront"].contains(&w.as_str()))
    {
        return "shop".into();
    }
    if all
        .iter()
        .any(|w| w.starts_with("chat") || w.starts_with("messag"))
    {
        return "chat".into();
    }
    // The word before "app" (or the first meaningful word of the first phrase).
    let first = phrases.first().cloned().unwrap_or_default();
    let name = first
        .iter()
        .position(|w| SOFTWARE_WORDS.contains(&w.as_str()))
        .and_then(|at| at.checked_sub(1))
        .map(|at| first[at].clone())
        .or_else(|| {
            first
                .iter()
                .find(|w| !SOFTWARE_WORDS.contains(&w.as_str()))
                .cloned()
        })
        .unwrap_or_else(|| "app".into());
    dns_label(&name)
}

fn dns_label(word: &str) -> String {
    let cleaned: String = word
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '-' || c.is_ascii_digit());
    if trimmed.is_empty() {
        "app".into()
    } else {
        trimmed.chars().take(40).collect()
    }
}

fn plural(word: &str) -> String {
    if word.ends_with('s') {
        word.to_string()
    } else if let Some(stem) = word
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']))
    {
        format!("{stem}ies")
    } else if word.ends_with("ch") || word.ends_with("sh") || word.ends_with('x') {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

fn title(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn field(name: &str, type_: FieldType, required: bool) -> FieldPlan {
    FieldPlan {
        name: name.into(),
        type_,
        required,
    }
}

#[derive(Default)]
struct Builder {
    app: String,
    auth: Vec<AuthProvider>,
    wants_sign_in: bool,
    screens: Vec<Screen>,
    models: Vec<Model>,
    storage: Vec<BucketPlan>,
    functions: Vec<FunctionPlan>,
    markdown: bool,
    tags: bool,
    images: bool,
    notifications: bool,
    schedule: bool,
    admin: bool,
    chat: bool,
    shop: bool,
}

impl Builder {
    fn screen(&mut self, name: &str, purpose: &str) {
        if !self.screens.iter().any(|s| s.name == name) {
            self.screens.push(Screen {
                name: name.into(),
                purpose: purpose.into(),
            });
        }
    }

    fn model(&mut self, collection: &str, access: Access, fields: Vec<FieldPlan>) {
        if !self.models.iter().any(|m| m.collection == collection) {
            self.models.push(Model {
                collection: collection.into(),
                fields,
                access,
            });
        }
    }

    fn auth(&mut self, method: AuthProvider) {
        if !self.auth.contains(&method) {
            self.auth.push(method);
        }
    }

    fn messages(&mut self) {
        self.model(
            "messages",
            Access::MemberPosts,
            vec![
                field("room", FieldType::Reference, true),
                field("author", FieldType::String, true),
                field("members", FieldType::Array, true),
                field("text", FieldType::String, true),
                field("sentAt", FieldType::Timestamp, true),
            ],
        );
        self.screen("Conversation", "read and send messages in a room");
    }

    /// One phrase of the prompt; returns nothing, records what it asks for.
    fn phrase(&mut self, words: &[String], may_name_things: bool) {
        let mut known = false;
        let mut mark = |hit: bool| {
            known |= hit;
            hit
        };
        if mark(has(words, &["email"])) {
            self.auth(AuthProvider::Email);
        }
        if mark(has(words, &["google"])) {
            self.auth(AuthProvider::Google);
        }
        if mark(has(words, &["github"])) {
            self.auth(AuthProvider::Github);
        }
        if mark(has(words, &["phone", "sms"])) {
            self.auth(AuthProvider::Phone);
        }
        if mark(has(words, &["anonymous", "guest"])) {
            self.auth(AuthProvider::Anonymous);
        }
        if mark(has(
            words,
            &[
                "login", "log-in", "signin", "sign-in", "signup", "auth", "account",
            ],
        )) || (words.contains(&"sign".to_string()) && mark(true))
        {
            self.wants_sign_in = true;
        }
        if mark(has(words, &["markdown"])) {
            self.markdown = true;
        }
        if mark(has(words, &["editor"])) {
            self.screen("Editor", "write and edit a document, with a live preview");
        }
        if mark(has(words, &["tag", "label"])) {
            self.tags = true;
        }
        if mark(has(words, &["image", "photo", "picture", "upload", "attachment"])) {
            self.images = true;
        }
        if mark(has(words, &["note"])) {
            self.model(
                "notes",
                Access::Owner,
                vec![
                    field("title", FieldType::String, true),
                    field("body", FieldType::String, false),
                    field("owner", FieldType::String, true),
                    field("createdAt", FieldType::Timestamp, true),
                    field("updatedAt", FieldType::Timestamp, false),
                ],
            );
            self.screen("Notes", "list, search and open your notes");
        }
        if mark(has(words, &["product", "catalog", "catalogue", "inventory"])) {
            self.model(
                "products",
                Access::PublicRead,
                vec![
                    field("name", FieldType::String, true),
                    field("description", FieldType::String, false),
                    field("price", FieldType::Number, true),
                    field("imageUrl", FieldType::String, false),
                    field("stock", FieldType::Number, true),
                ],
            );
            self.screen("Products", "browse the catalogue and open a product");
        }
        if mark(has(words, &["cart", "basket"])) {
            self.model(
                "carts",
                Access::Owner,
                vec![
                    field("owner", FieldType::String, true),
                    field("items", FieldType::Array, true),
                    field("updatedAt", FieldType::Timestamp, false),
                ],
            );
            self.screen("Cart", "review items, change quantities, go to checkout");
        }
        if mark(has(words, &["checkout", "payment", "order", "purchase"])) {
            self.model(
                "orders",
                Access::OwnerReadOnly,
                vec![
                    field("owner", FieldType::String, true),
                    field("items", FieldType::Array, true),
                    field("total", FieldType::Number, true),
                    field("status", FieldType::String, true),
                    field("createdAt", FieldType::Timestamp, true),
                ],
            );
            self.functions.push(FunctionPlan {
                name: "checkout".into(),
                purpose: "turn the caller's cart into an order with a computed total".into(),
                trigger: TriggerPlan {
                    http: Some("/api/checkout".into()),
                    schedule: None,
                    document: None,
                },
                memory: "256Mi".into(),
                timeout_seconds: 10,
                egress: vec![],
            });
            self.screen("Checkout", "confirm the order and see its status");
        }
        if mark(has(words, &["admin", "backoffice", "back-office"])) {
            self.admin = true;
            self.screen(
                "Admin",
                "manage the catalogue and see orders (users whose token says admin)",
            );
        }
        if mark(has(words, &["room", "channel", "group"])) {
            self.model(
                "rooms",
                Access::Members,
                vec![
                    field("name", FieldType::String, true),
                    field("owner", FieldType::String, true),
                    field("members", FieldType::Array, true),
                    field("createdAt", FieldType::Timestamp, true),
                ],
            );
            self.screen(
                "Rooms",
                "the rooms you are a member of; create one and invite people",
            );
        }
        if mark(has(words, &["chat", "conversation", "messenger"])) {
            self.chat = true;
        }
        if mark(has(
            words,
            &["shop", "store", "ecommerce", "commerce", "storefront"],
        )) {
            self.shop = true;
        }
        if mark(has(words, &["message"])) {
            self.messages();
        }
        if mark(has(words, &["notification", "notify", "push", "alert"])) {
            self.notifications = true;
        }
        if mark(has(words, &["reminder", "digest", "daily", "weekly", "schedule"])) {
            self.schedule = true;
        }
        if !known && may_name_things && words.len() <= 3 {
            self.unknown(words);
        }
    }

    /// A phrase no table entry knows: its last noun becomes a collection
    /// owned by the user who creates each document.
    fn unknown(&mut self, words: &[String]) {
        let Some(noun) = words.iter().rev().find(|w| {
            !SOFTWARE_WORDS.contains(&w.as_str()) && w.chars().all(|c| c.is_ascii_lowercase()) && w.len() > 2
        }) else {
            return;
        };
        let collection = plural(noun);
        self.model(
            &collection,
            Access::Owner,
            vec![
                field("title", FieldType::String, true),
                field("owner", FieldType::String, true),
                field("createdAt", FieldType::Timestamp, true),
            ],
        );
        self.screen(
            &title(&collection),
            &format!("list, create and edit your {collection}"),
        );
    }

    fn finish(mut self) -> Plan {
        if self.chat && !self.models.iter().any(|m| m.collection == "messages") {
            self.messages();
        }
        if self.shop && !self.models.iter().any(|m| m.access == Access::PublicRead) {
            self.unknown(&["product".to_string()]);
            if let Some(products) = self.models.last_mut() {
                products.access = Access::PublicRead;
            }
        }
        if self.models.is_empty() {
            self.unknown(&[self.app.clone()]);
        }
        if self.models.is_empty() {
            self.unknown(&["item".to_string()]);
        }
        let needs_users = self.models.iter().any(|m| m.access != Access::PublicRead) || self.wants_sign_in;
        if needs_users && self.auth.is_empty() {
            self.auth(AuthProvider::Email);
        }
        if !self.auth.is_empty() {
            self.screens.insert(
                0,
                Screen {
                    name: "Sign in".into(),
                    purpose: "sign in or create an account".into(),
                },
            );
        }
        let primary = self
            .models
            .iter()
            .position(|m| m.access == Access::Owner)
            .unwrap_or(0);
        let primary_name = self.models[primary].collection.clone();
        if self.markdown {
            if let Some(body) = self.models[primary].fields.iter_mut().find(|f| f.name == "body") {
                body.type_ = FieldType::String;
            } else {
                self.models[primary]
                    .fields
                    .push(field("body", FieldType::String, false));
            }
            self.screen("Editor", "write in Markdown with a live preview");
        }
        if self.tags {
            self.models[primary]
                .fields
                .push(field("tags", FieldType::Array, false));
            self.screen("Tags", &format!("filter {primary_name} by tag"));
        }
        if self.images {
            self.models[primary]
                .fields
                .push(field("images", FieldType::Array, false));
            self.storage.push(BucketPlan {
                name: "images".into(),
                max_object_size: "10Mi".into(),
            });
            self.functions.push(FunctionPlan {
                name: "thumbnails".into(),
                purpose: format!("make thumbnails for the images attached to {primary_name}"),
                trigger: TriggerPlan {
                    http: None,
                    schedule: None,
                    document: Some(DocumentTriggerPlan {
                        collection: primary_name.clone(),
                        events: vec!["create".into(), "update".into()],
                    }),
                },
                memory: "512Mi".into(),
                timeout_seconds: 30,
                egress: vec![],
            });
        }
        if self.notifications {
            self.model(
                "devices",
                Access::Owner,
                vec![
                    field("owner", FieldType::String, true),
                    field("pushToken", FieldType::String, true),
                    field("platform", FieldType::String, true),
                ],
            );
            let source = if self.models.iter().any(|m| m.collection == "messages") {
                "messages".to_string()
            } else {
                primary_name.clone()
            };
            self.functions.push(FunctionPlan {
                name: "notify".into(),
                purpose: format!(
                    "send a push notification to the devices of everyone concerned by new {source}"
                ),
                trigger: TriggerPlan {
                    http: None,
                    schedule: None,
                    document: Some(DocumentTriggerPlan {
                        collection: source,
                        events: vec!["create".into()],
                    }),
                },
                memory: "128Mi".into(),
                timeout_seconds: 10,
                egress: vec![EgressPlan {
                    cidr: "0.0.0.0/0".into(),
                    ports: vec![443],
                    reason:
                        "push services (FCM, APNs) have no fixed address range; narrow this if yours does"
                            .into(),
                }],
            });
            self.screen("Notification settings", "choose what you are notified about");
        }
        if self.schedule {
            self.functions.push(FunctionPlan {
                name: "digest".into(),
                purpose: format!("prepare each user's daily digest of {primary_name}"),
                trigger: TriggerPlan {
                    http: None,
                    schedule: Some("0 7 * * *".into()),
                    document: None,
                },
                memory: "256Mi".into(),
                timeout_seconds: 120,
                egress: vec![],
            });
        }
        if self.admin && !self.models.iter().any(|m| m.access == Access::PublicRead) {
            // An admin panel with nothing public to manage still needs its screen, nothing more.
            self.screen("Admin", "manage the app (users whose token says admin)");
        }
        let mut apis = Vec::new();
        for model in &self.models {
            let c = &model.collection;
            apis.push(Api {
                method: "GET".into(),
                path: format!("/v1/{c}/{{id}}"),
                purpose: format!("read one of {c}"),
            });
            if model.access != Access::OwnerReadOnly {
                apis.push(Api {
                    method: "POST".into(),
                    path: format!("/v1/{c}"),
                    purpose: format!("create in {c}"),
                });
            }
        }
        for function in &self.functions {
            if let Some(path) = &function.trigger.http {
                apis.push(Api {
                    method: "POST".into(),
                    path: path.clone(),
                    purpose: function.purpose.clone(),
                });
            }
        }
        let mut parts: Vec<String> = self.models.iter().map(|m| m.collection.clone()).collect();
        if !self.auth.is_empty() {
            parts.push(format!("{} sign-in", auth_names(&self.auth).join("/")));
        }
        parts.extend(self.storage.iter().map(|b| format!("{} storage", b.name)));
        let last = parts.pop().expect("a plan has at least one collection");
        let summary = if parts.is_empty() {
            format!("{} app with {last}", title(&self.app))
        } else {
            format!("{} app with {} and {last}", title(&self.app), parts.join(", "))
        };
        Plan {
            summary,
            app: self.app,
            auth: self.auth,
            screens: self.screens,
            models: self.models,
            storage: self.storage,
            apis,
            functions: self.functions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collections(plan: &Plan) -> Vec<(&str, Access)> {
        plan.models
            .iter()
            .map(|m| (m.collection.as_str(), m.access))
            .collect()
    }

    #[test]
    fn the_notes_prompt() {
        let plan = plan("A notes app with email login, markdown editor, tags, and images");
        plan.validate().unwrap();
        assert_eq!(plan.app, "notes");
        assert_eq!(plan.auth, vec![AuthProvider::Email]);
        assert_eq!(collections(&plan), vec![("notes", Access::Owner)]);
        let notes = &plan.models[0];
        for name in ["title", "body", "owner", "tags", "images"] {
            assert!(notes.fields.iter().any(|f| f.name == name), "notes.{name}");
        }
        assert_eq!(plan.storage[0].name, "images");
        assert!(plan.screens.iter().any(|s| s.name == "Editor"));
        assert_eq!(
            plan.functions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            vec!["thumbnails"]
        );
    }

    #[test]
    fn the_shop_prompt() {
        let plan = plan("E-commerce prototype: products, cart, checkout, admin panel");
        plan.validate().unwrap();
        assert_eq!(plan.app, "shop");
        assert_eq!(
            collections(&plan),
            vec![
                ("products", Access::PublicRead),
                ("carts", Access::Owner),
                ("orders", Access::OwnerReadOnly)
            ]
        );
        assert_eq!(plan.auth, vec![AuthProvider::Email], "carts need signed-in users");
        assert!(plan.screens.iter().any(|s| s.name == "Admin"));
        assert_eq!(plan.functions[0].trigger.http.as_deref(), Some("/api/checkout"));
    }

    #[test]
    fn the_chat_prompt() {
        let plan = plan("Chat app with rooms, messages, and push notifications");
        plan.validate().unwrap();
        assert_eq!(plan.app, "chat");
        assert_eq!(
            collections(&plan),
            vec![
                ("rooms", Access::Members),
                ("messages", Access::MemberPosts),
                ("devices", Access::Owner)
            ]
        );
        let notify = plan.functions.iter().find(|f| f.name == "notify").unwrap();
        assert_eq!(notify.trigger.document.as_ref().unwrap().collection, "messages");
        assert_eq!(notify.egress[0].ports, vec![443]);
    }

    #[test]
    fn unknown_things_become_owned_collections() {
        let plan = plan("A recipe app with ingredients, ratings and a daily digest");
        plan.validate().unwrap();
        assert_eq!(plan.app, "recipe");
        assert_eq!(
            collections(&plan),
            vec![
                ("recipes", Access::Owner),
                ("ingredients", Access::Owner),
                ("ratings", Access::Owner)
            ]
        );
        assert_eq!(plan.functions[0].trigger.schedule.as_deref(), Some("0 7 * * *"));
    }

    #[test]
    fn redaction_markers_are_not_features() {
        let plan = plan("A notes app [REDACTED:github-pat], [REDACTED:aws-access-token");
        assert_eq!(plan.auth, vec![AuthProvider::Email]);
        assert_eq!(collections(&plan), vec![("notes", Access::Owner)]);
    }

    #[test]
    fn the_same_prompt_gives_the_same_plan() {
        let prompt = "Chat app with rooms, messages, and push notifications";
        assert_eq!(plan(prompt), plan(prompt));
    }

    #[test]
    fn any_prompt_gives_a_valid_plan() {
        for prompt in [
            "",
            "!!!",
            "app",
            "123 456",
            "a b c",
            "[REDACTED:github-pat] notes",
            "Ünïcode 🚀 app",
        ] {
            plan(prompt)
                .validate()
                .unwrap_or_else(|e| panic!("{prompt:?}: {e}"));
        }
    }
}
