//! The ChatOps commands people type in pull-request comments: `/approve
//! [stage]`, `/hold`, `/unhold`, `/promote <stage>`, `/rollback <stage>` and
//! `/retest`.
//!
//! The parser faces anyone who can comment, so it is strict and reads a
//! comment the way GitHub renders it: a command is what a reader sees as a
//! command, never text shown as code or as a quote.
//!
//! - Only the first token of a line counts. Up to three leading spaces are
//!   allowed, as in Markdown; four or more (or a tab) make an indented code
//!   block, which is ignored.
//! - Lines inside fenced code blocks (```` ``` ```` or `~~~`, with or without
//!   an info string, up to the matching closing fence or the end of the
//!   comment) are ignored, and so are lines inside an HTML comment
//!   (`<!-- … -->`), which GitHub does not show at all.
//! - Whether a fence that is indented or follows a list marker opens a
//!   block, and where that block ends, depends on the list it may be in,
//!   which this parser does not track. So fences are read two ways: as
//!   outside any list (indented at most three spaces, no list marker), and
//!   as inside a list item (any indentation, after list markers, ending with
//!   the item). A line in a block under both readings is code; under only
//!   one it may be, and a command there never runs: it is reported as a
//!   [`Problem::MaybeInCode`]. When in doubt, a line is not a command — and
//!   every command that does run is named in the reply, so none runs unseen.
//! - Quoted lines (`>`) are ignored. A line right after a quoted line, with
//!   no empty line between, continues the quote in Markdown (a "lazy"
//!   continuation): it is shown quoted, so it never runs; a command there is
//!   reported as a [`Problem::InsideQuote`].
//! - Commands are lower case and case-sensitive, like GitHub's own slash
//!   commands: `/Approve` is not a command, and the reply says so.
//! - A first token that starts with `/` but is not shaped like a command —
//!   no letter right after the slash (`/`, `//`, `/42`) or a second slash
//!   (`/usr/bin`) — is prose, such as a path, and is ignored.
//! - `\n`, `\r\n` and a lone `\r` all end a line, as in Markdown.
//! - At most [`MAX_COMMANDS`] commands per comment: the next one is a
//!   [`Problem::TooMany`] and the rest of the comment is ignored, so one
//!   comment can neither queue unbounded work nor get an unbounded reply.
//!
//! Every command line yields one [`Parsed`]: a [`Command`] or a [`Problem`],
//! with its line number. What a command decides is the operator's business;
//! [`reply`] puts the operator's decisions and the problems into the one
//! reply a comment gets.

use std::fmt;

/// Most commands one comment may carry; the next command line is a
/// [`Problem::TooMany`].
pub const MAX_COMMANDS: usize = 10;

/// Longest piece of a comment quoted back in a reply, in characters. Longer
/// text is cut, so a reply stays short whatever was written.
const MAX_ECHO: usize = 40;

/// A ChatOps command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `/approve [stage]`: approve the revision for `stage`, or for the stage
    /// awaiting approval when none is named.
    Approve {
        /// The stage named, if any.
        stage: Option<String>,
    },
    /// `/hold`: stop promotions of the revision until `/unhold`.
    Hold,
    /// `/unhold`: lift a `/hold`.
    Unhold,
    /// `/promote <stage>`: promote into `stage` once its gates hold.
    Promote {
        /// The stage.
        stage: String,
    },
    /// `/rollback <stage>`: roll `stage` back to its previous revision.
    Rollback {
        /// The stage.
        stage: String,
    },
    /// `/retest`: run the emulator checks again.
    Retest,
}

impl Command {
    /// The command's name with its slash (`/approve`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Approve { .. } => "/approve",
            Command::Hold => "/hold",
            Command::Unhold => "/unhold",
            Command::Promote { .. } => "/promote",
            Command::Rollback { .. } => "/rollback",
            Command::Retest => "/retest",
        }
    }

    /// The stage the command names, if it names one.
    pub fn stage(&self) -> Option<&str> {
        match self {
            Command::Approve { stage } => stage.as_deref(),
            Command::Promote { stage } | Command::Rollback { stage } => Some(stage),
            Command::Hold | Command::Unhold | Command::Retest => None,
        }
    }
}

impl fmt::Display for Command {
    /// The command as it would be typed (`/approve production`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self.stage() {
            Some(stage) => write!(f, " {stage}"),
            None => Ok(()),
        }
    }
}

/// Why a command line is not a command. Text quoted from the comment is cut
/// to a few dozen characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No command has this name.
    Unknown {
        /// What was typed, slash included.
        found: String,
        /// The closest known command, when one is close.
        suggestion: Option<&'static str>,
    },
    /// A known command in the wrong case (`/Approve`): commands are lower
    /// case, like GitHub's.
    NotLowerCase {
        /// What was typed, slash included.
        found: String,
        /// The command meant.
        command: &'static str,
    },
    /// `/promote` or `/rollback` without a stage.
    MissingStage {
        /// The command.
        command: &'static str,
    },
    /// The stage is not a stage name (see [`is_stage_name`]).
    InvalidStage {
        /// The command.
        command: &'static str,
        /// What was typed as the stage.
        stage: String,
    },
    /// More arguments than the command takes.
    ExtraArguments {
        /// The command.
        command: &'static str,
        /// The first argument too many.
        extra: String,
    },
    /// The line continues a quote (no empty line after the quoted text), so
    /// it is shown quoted and does not run.
    InsideQuote {
        /// What was typed, slash included.
        found: String,
    },
    /// The line may be inside a code block (a fence in a list item, or an
    /// indented one, can be read either way), so it does not run.
    MaybeInCode {
        /// What was typed, slash included.
        found: String,
    },
    /// The comment has more than [`MAX_COMMANDS`] commands; this one and the
    /// rest of the comment are ignored.
    TooMany {
        /// The limit.
        limit: usize,
    },
}

impl std::error::Error for Problem {}

impl fmt::Display for Problem {
    /// The problem in one sentence of Markdown. Text from the comment is
    /// shown as code, so that a quoted `@name` mentions nobody and nothing
    /// quoted renders as Markdown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unknown { found, suggestion } => {
                write!(f, "unknown command {}", code(found))?;
                match suggestion {
                    Some(known) => write!(f, " — did you mean {}?", code(known)),
                    None => write!(f, " — the commands are {}", known_list()),
                }
            }
            Problem::NotLowerCase { found, command } => write!(
                f,
                "{} is not a command: commands are lower case, like GitHub's — did you mean {}?",
                code(found),
                code(command)
            ),
            Problem::MissingStage { command } => {
                write!(f, "{} needs a stage: {}", code(command), code(&usage(command)))
            }
            Problem::InvalidStage { command, stage } => {
                write!(f, "{} is not a stage name", code(stage))?;
                let lower = stage.to_lowercase();
                if lower != *stage && is_stage_name(&lower) {
                    write!(f, " (stage names are lower case: {})", code(&lower))?;
                }
                write!(f, " — usage: {}", code(&usage(command)))
            }
            Problem::ExtraArguments { command, extra } => write!(
                f,
                "{} takes {} (found {}) — usage: {}; write any reason on another line",
                code(command),
                arguments_taken(command),
                code(extra),
                code(&usage(command))
            ),
            Problem::InsideQuote { found } => write!(
                f,
                "{} continues the quote above it, so it is quoted text and did not run — leave an empty line before a command",
                code(found)
            ),
            Problem::MaybeInCode { found } => write!(
                f,
                "{} may be inside a code block, so it did not run — write commands outside code blocks and lists",
                code(found)
            ),
            Problem::TooMany { limit } => write!(
                f,
                "more than {limit} commands in one comment — this line and the rest of the comment were ignored"
            ),
        }
    }
}

/// One command line of a comment: the command, or why it is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Line number in the comment, from 1.
    pub line: usize,
    /// The command, or the problem with the line.
    pub result: Result<Command, Problem>,
}

/// The commands of a comment `body`, in order, each with its line number.
/// See the [module documentation](self) for what counts as a command line.
pub fn parse(body: &str) -> Vec<Parsed> {
    let mut reader = Reader::default();
    let mut parsed = Vec::new();
    for (index, line) in lines(body).enumerate() {
        let Some(result) = reader.read(line) else {
            continue;
        };
        let line = index + 1;
        if parsed.len() == MAX_COMMANDS {
            let result = Err(Problem::TooMany { limit: MAX_COMMANDS });
            parsed.push(Parsed { line, result });
            break;
        }
        parsed.push(Parsed { line, result });
    }
    parsed
}

/// Whether `name` is a valid stage name: `^[a-z][a-z0-9-]{0,31}$`, the
/// shape `PromotionPolicy` stages have.
pub fn is_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_lowercase()
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The problems of `parsed`, one line each, such as: line 3: unknown
/// command `/aprove` — did you mean `/approve`?
pub fn problems(parsed: &[Parsed]) -> Vec<String> {
    parsed
        .iter()
        .filter_map(|p| {
            p.result
                .as_ref()
                .err()
                .map(|problem| format!("line {}: {problem}", p.line))
        })
        .collect()
}

/// The one reply a comment gets: a Markdown list with an item per command
/// line, in order — the operator's `decide` text for a command (what it did
/// and why), the problem for a line that is not a command. `None` when the
/// comment has no command line: such a comment gets no reply.
///
/// No line of the reply starts with `/`, so a reply is never read as a
/// command.
pub fn reply<F>(parsed: &[Parsed], mut decide: F) -> Option<String>
where
    F: FnMut(&Command) -> String,
{
    if parsed.is_empty() {
        return None;
    }
    let items: Vec<String> = parsed
        .iter()
        .map(|p| match &p.result {
            Ok(command) => format!(
                "- line {}, {}: {}",
                p.line,
                code(&command.to_string()),
                decide(command)
            ),
            Err(problem) => format!("- line {}: {problem}", p.line),
        })
        .collect();
    Some(items.join("\n"))
}

/// The known commands, in the order suggestions prefer them.
const KNOWN: [&str; 6] = ["/approve", "/hold", "/unhold", "/promote", "/rollback", "/retest"];

/// What a line is, given the lines before it.
#[derive(Debug, Default)]
struct Reader {
    /// The fenced code block the line is in, if any, under each [`Reading`].
    fences: [Option<Fence>; 2],
    /// Whether the line is inside an HTML comment.
    html_comment: bool,
    /// Whether the previous line was quoted text that a plain line would
    /// continue (a lazy continuation).
    quote_open: bool,
}

/// A way to read fences. An indented fence, or one after a list marker,
/// opens a code block inside a list item but not outside one, and a list
/// item's block ends with the item; lists are not tracked, so both readings
/// are kept.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// As outside any list: a fence indented at most three spaces opens a
    /// block; after a list marker it is text.
    TopLevel,
    /// As inside a list item: a fence at any indentation, or after list
    /// markers, opens a block; a block opened after a list marker ends with
    /// the first line indented less than the fence (the item ended).
    InList,
}

/// Both readings, in the order of [`Reader::fences`].
const READINGS: [Reading; 2] = [Reading::TopLevel, Reading::InList];

/// An open fenced code block.
#[derive(Debug, Clone, Copy)]
struct Fence {
    /// `` ` `` or `~`.
    marker: char,
    /// How many markers opened it: the closing fence has at least as many.
    length: usize,
    /// Most indentation, in columns, the closing fence may have.
    indent: usize,
    /// For a fence after a list marker, its column: a line indented less
    /// ends the list item, and the block with it.
    item: Option<usize>,
}

impl Fence {
    /// Whether `line` ends the list item this block is in.
    fn ended_by(self, line: &str) -> bool {
        let (indent, text) = indentation(line);
        !text.is_empty() && self.item.is_some_and(|column| indent < column)
    }
}

impl Reader {
    /// Reads the next `line`: `Some` when it is a command line.
    fn read(&mut self, line: &str) -> Option<Result<Command, Problem>> {
        if self.html_comment {
            // Nothing inside an HTML comment is Markdown, fences included.
            // Whatever follows `-->` on the same line is ignored too: rare,
            // and ignoring is the safe side.
            self.html_comment = !line.contains("-->");
            return None;
        }
        let hidden = self.fenced(line);
        if hidden > 0 {
            // A fence may interrupt a quote's lazy continuation.
            self.quote_open = false;
            // Code under both readings is code; under one, it may be.
            return if hidden == 1 { maybe_in_code(line) } else { None };
        }
        let (indent, text) = indentation(line);
        // Blank means spaces and tabs only, as in Markdown: a line of other
        // white space (U+00A0) is text and keeps a quote going.
        if text.is_empty() {
            self.quote_open = false;
            return None;
        }
        if indent >= 4 {
            // Indented code, or the lazy continuation of a paragraph: text
            // either way, never a command.
            return None;
        }
        if let Some(quoted) = text.strip_prefix('>') {
            self.quote_open = !is_blank(quoted);
            return None;
        }
        if text.starts_with("<!--") {
            // An HTML block may interrupt a quote's lazy continuation.
            self.html_comment = !text.contains("-->");
            self.quote_open = false;
            return None;
        }
        let command = command_line(text)?;
        if self.quote_open {
            return Some(Err(Problem::InsideQuote {
                found: clip(first_token(text)),
            }));
        }
        Some(command)
    }

    /// Under how many readings `line` is part of a fenced code block (its
    /// fences included), updating each.
    fn fenced(&mut self, line: &str) -> usize {
        let mut hidden = 0;
        for (fence, reading) in self.fences.iter_mut().zip(READINGS) {
            let (next, inside) = step(*fence, line, reading);
            *fence = next;
            hidden += usize::from(inside);
        }
        hidden
    }
}

/// The block open after `line` under `reading`, given the one `open` before
/// it, and whether `line` is part of a block.
fn step(open: Option<Fence>, line: &str, reading: Reading) -> (Option<Fence>, bool) {
    match open {
        // The list item ended, and its block: the line may open another.
        Some(fence) if fence.ended_by(line) => {
            let next = opens(line, reading);
            (next, next.is_some())
        }
        // Content, or the closing fence.
        Some(fence) => ((!closes(fence, line)).then_some(fence), true),
        None => {
            let next = opens(line, reading);
            (next, next.is_some())
        }
    }
}

/// What a command line that may be inside a code block yields: a problem,
/// never a command.
fn maybe_in_code(line: &str) -> Option<Result<Command, Problem>> {
    let (indent, text) = indentation(line);
    if indent >= 4 {
        return None;
    }
    command_line(text).map(|_| {
        Err(Problem::MaybeInCode {
            found: clip(first_token(text)),
        })
    })
}

/// Whether `text` has nothing but spaces and tabs: Markdown's blank.
fn is_blank(text: &str) -> bool {
    text.chars().all(|c| c == ' ' || c == '\t')
}

/// The lines of `body`: `\n`, `\r\n` and a lone `\r` each end one.
fn lines(body: &str) -> impl Iterator<Item = &str> {
    body.split('\n')
        .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
}

/// The indentation of `line` in columns (a tab advances to the next multiple
/// of four, as in Markdown) and the rest of the line.
fn indentation(line: &str) -> (usize, &str) {
    let mut columns = 0;
    for (at, c) in line.char_indices() {
        match c {
            ' ' => columns += 1,
            '\t' => columns += 4 - columns % 4,
            _ => return (columns, &line[at..]),
        }
    }
    (columns, "")
}

/// The fence `line` opens under `reading`, if it opens one.
fn opens(line: &str, reading: Reading) -> Option<Fence> {
    let (mut indent, mut text) = indentation(line);
    if matches!(reading, Reading::TopLevel) && indent > 3 {
        return None;
    }
    let mut in_item = false;
    while let Some(rest) = list_marker(text).filter(|_| matches!(reading, Reading::InList)) {
        let (more, after) = indentation(rest);
        indent += text.len() - rest.len() + more;
        text = after;
        in_item = true;
    }
    let marker = text.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let length = text.chars().take_while(|c| *c == marker).count();
    if length < 3 {
        return None;
    }
    // A backtick fence's info string may not contain a backtick: such a
    // line is inline code, not a fence.
    let info = &text[length..];
    if marker == '`' && info.contains('`') {
        return None;
    }
    Some(Fence {
        marker,
        length,
        indent: indent.max(3),
        item: in_item.then_some(indent),
    })
}

/// Whether `line` closes `fence`: the same marker, at least as many, nothing
/// but spaces after, and not indented more than the opening fence allows.
fn closes(fence: Fence, line: &str) -> bool {
    let (indent, text) = indentation(line);
    let length = text.chars().take_while(|c| *c == fence.marker).count();
    indent <= fence.indent && length >= fence.length && is_blank(&text[length..])
}

/// `text` after a list marker (`-`, `*`, `+`, `1.`, `1)`) and the space
/// that must follow it, if it starts with one.
fn list_marker(text: &str) -> Option<&str> {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let rest = match digits {
        0 => text.strip_prefix(['-', '*', '+'])?,
        1..=9 => text[digits..].strip_prefix(['.', ')'])?,
        _ => return None,
    };
    rest.starts_with([' ', '\t']).then_some(rest)
}

/// The first whitespace-separated token of `text`.
fn first_token(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or_default()
}

/// The command on a line whose indentation is gone, or `None` when its
/// first token is not shaped like a command.
fn command_line(text: &str) -> Option<Result<Command, Problem>> {
    // Only the slash may come first: a line starting with other white space
    // (U+00A0) starts with text in Markdown.
    if !text.starts_with('/') {
        return None;
    }
    let mut tokens = text.split_whitespace();
    let first = tokens.next()?;
    let name = first.strip_prefix('/')?;
    let shaped = name.starts_with(|c: char| c.is_ascii_alphabetic()) && !name.contains('/');
    if !shaped {
        return None;
    }
    let stage = tokens.next();
    let extra = tokens.next();
    Some(command(first, stage, extra))
}

/// The command typed as `first` (slash included) with its first two
/// arguments.
fn command(first: &str, stage: Option<&str>, extra: Option<&str>) -> Result<Command, Problem> {
    let Some(command) = KNOWN.iter().copied().find(|k| *k == first) else {
        return Err(unknown(first));
    };
    // The first argument the command does not take.
    let surplus = if takes_stage(command) { extra } else { stage };
    if let Some(extra) = surplus {
        return Err(Problem::ExtraArguments {
            command,
            extra: clip(extra),
        });
    }
    let stage = match stage {
        Some(stage) if !is_stage_name(stage) => {
            return Err(Problem::InvalidStage {
                command,
                stage: clip(stage),
            });
        }
        stage => stage.map(str::to_owned),
    };
    match (command, stage) {
        ("/approve", stage) => Ok(Command::Approve { stage }),
        ("/hold", _) => Ok(Command::Hold),
        ("/unhold", _) => Ok(Command::Unhold),
        ("/retest", _) => Ok(Command::Retest),
        ("/promote", Some(stage)) => Ok(Command::Promote { stage }),
        ("/rollback", Some(stage)) => Ok(Command::Rollback { stage }),
        _ => Err(Problem::MissingStage { command }),
    }
}

/// Whether `command` takes a stage argument.
fn takes_stage(command: &str) -> bool {
    matches!(command, "/approve" | "/promote" | "/rollback")
}

/// The problem with `first`, a command-shaped token that is no command.
fn unknown(first: &str) -> Problem {
    let lower = first.to_lowercase();
    if let Some(command) = KNOWN.iter().copied().find(|k| *k == lower) {
        return Problem::NotLowerCase {
            found: clip(first),
            command,
        };
    }
    Problem::Unknown {
        found: clip(first),
        suggestion: suggest(&lower),
    }
}

/// The known command closest to `typed` (lower case, slash included), when
/// it is at most two edits away. `/lgtm`, which other bots use for
/// approving, suggests `/approve`.
fn suggest(typed: &str) -> Option<&'static str> {
    if typed == "/lgtm" {
        return Some("/approve");
    }
    // Long names are nowhere near a command; skipping them bounds the work.
    if typed.chars().count() > 16 {
        return None;
    }
    KNOWN
        .iter()
        .copied()
        .map(|known| (distance(typed, known), known))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Edit distance between `a` and `b`, counting a swap of two neighbours as
/// one edit (`/apporve`), over characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: the distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// How `command` is used.
fn usage(command: &str) -> String {
    match command {
        "/approve" => "/approve [stage]".to_owned(),
        "/promote" | "/rollback" => format!("{command} <stage>"),
        _ => command.to_owned(),
    }
}

/// What arguments `command` takes, in words.
fn arguments_taken(command: &str) -> &'static str {
    match command {
        "/approve" => "at most a stage",
        "/promote" | "/rollback" => "only a stage",
        _ => "no arguments",
    }
}

/// Every known command, as code, for a reply.
fn known_list() -> String {
    let names: Vec<String> = KNOWN.iter().map(|k| code(&usage(k))).collect();
    names.join(", ")
}

/// `text` cut to [`MAX_ECHO`] characters, with control and bidirectional
/// formatting characters replaced: what a reply may quote of a comment.
fn clip(text: &str) -> String {
    let mut clipped: String = text
        .chars()
        .take(MAX_ECHO)
        .map(|c| {
            if c.is_control() || is_bidi(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    if text.chars().nth(MAX_ECHO).is_some() {
        clipped.push('…');
    }
    clipped
}

/// Whether `c` changes the direction of the text around it, which could make
/// a reply read differently from what it says.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `text` as a Markdown code span, with a fence longer than any run of
/// backticks inside it so it cannot be closed early.
fn code(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The commands of `body`, problems left out.
    fn commands(body: &str) -> Vec<Command> {
        parse(body).into_iter().filter_map(|p| p.result.ok()).collect()
    }

    /// The one parse result of `body`.
    fn only(body: &str) -> Result<Command, Problem> {
        let parsed = parse(body);
        assert_eq!(parsed.len(), 1, "{body:?} gave {parsed:?}");
        parsed[0].result.clone()
    }

    fn approve(stage: Option<&str>) -> Command {
        Command::Approve {
            stage: stage.map(str::to_owned),
        }
    }

    #[test]
    fn each_command_parses() {
        assert_eq!(only("/approve"), Ok(approve(None)));
        assert_eq!(only("/approve production"), Ok(approve(Some("production"))));
        assert_eq!(only("/hold"), Ok(Command::Hold));
        assert_eq!(only("/unhold"), Ok(Command::Unhold));
        assert_eq!(
            only("/promote staging"),
            Ok(Command::Promote {
                stage: "staging".into()
            })
        );
        assert_eq!(
            only("/rollback production"),
            Ok(Command::Rollback {
                stage: "production".into()
            })
        );
        assert_eq!(only("/retest"), Ok(Command::Retest));
    }

    #[test]
    fn commands_display_as_typed() {
        assert_eq!(approve(Some("production")).to_string(), "/approve production");
        assert_eq!(approve(None).to_string(), "/approve");
        assert_eq!(Command::Hold.to_string(), "/hold");
    }

    #[test]
    fn each_command_line_carries_its_line_number() {
        let parsed = parse("Looks good.\n\n/approve staging\nthanks\n/hold");
        let lines: Vec<usize> = parsed.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 5]);
    }

    #[test]
    fn only_the_first_token_of_a_line_counts() {
        assert!(parse("please /approve").is_empty());
        assert!(parse("I'd say /approve production is fine").is_empty());
        assert!(parse("`/approve`").is_empty());
        assert!(parse("- /approve").is_empty());
    }

    #[test]
    fn up_to_three_spaces_of_indentation_are_allowed() {
        assert_eq!(only(" /approve"), Ok(approve(None)));
        assert_eq!(only("   /approve"), Ok(approve(None)));
    }

    #[test]
    fn four_spaces_or_a_tab_make_an_indented_code_block() {
        assert!(parse("    /approve").is_empty());
        assert!(parse("\t/approve").is_empty());
        assert!(parse("  \t/approve").is_empty());
    }

    #[test]
    fn other_white_space_is_not_indentation() {
        // A no-break space is text in Markdown: the line starts with it.
        assert!(parse("\u{a0}/approve").is_empty());
    }

    #[test]
    fn lines_inside_a_backtick_fence_are_ignored() {
        let body = "```\n/approve\n```\n/hold";
        assert_eq!(commands(body), [Command::Hold]);
    }

    #[test]
    fn lines_inside_a_tilde_fence_with_an_info_string_are_ignored() {
        let body = "~~~ shell\n/approve\n/promote production\n~~~\n/retest";
        assert_eq!(commands(body), [Command::Retest]);
    }

    #[test]
    fn a_fence_closes_only_with_its_own_marker_and_length() {
        assert!(commands("````\n```\n/approve\n~~~~\n/hold").is_empty());
        assert_eq!(commands("````\n```\n/approve\n`````\n/hold"), [Command::Hold]);
    }

    #[test]
    fn a_closing_fence_has_nothing_after_it() {
        // ```` ```text ```` opens a block; inside it, it is content.
        assert!(commands("```\n```text\n/approve").is_empty());
        assert!(commands("```\n```\u{a0}\n/approve").is_empty());
    }

    #[test]
    fn a_closing_fence_indented_four_spaces_is_content() {
        assert!(commands("```\n    ```\n/approve").is_empty());
    }

    #[test]
    fn an_indented_fence_is_read_both_ways() {
        // Outside a list, the first line is indented code and the second
        // opens a block that holds `/approve`.
        let body = "    ```\n```\n/approve\n```";
        assert!(commands(body).is_empty());
        assert_eq!(problem_lines(body), [(3, maybe("/approve"))]);
        // In a list item, the indented fence opens a block.
        let body = "- item\n\n    ```\n  /approve\n    ```\n/hold";
        assert_eq!(commands(body), [Command::Hold]);
        assert_eq!(problem_lines(body), [(4, maybe("/approve"))]);
    }

    #[test]
    fn an_unclosed_fence_hides_the_rest_of_the_comment() {
        assert!(commands("```rust\n/approve\n\n/hold").is_empty());
    }

    /// The problems of `body`, with their line numbers.
    fn problem_lines(body: &str) -> Vec<(usize, Problem)> {
        parse(body)
            .into_iter()
            .filter_map(|p| Some((p.line, p.result.err()?)))
            .collect()
    }

    fn maybe(found: &str) -> Problem {
        Problem::MaybeInCode { found: found.into() }
    }

    #[test]
    fn a_fence_in_a_list_item_hides_its_lines() {
        // Outside a list, `  ```` would open a block at line 4 that holds
        // `/hold`: neither line runs, and the reply says why.
        let body = "- a list\n- ```\n  /approve\n  ```\n/hold";
        assert!(commands(body).is_empty());
        assert_eq!(problem_lines(body), [(3, maybe("/approve")), (5, maybe("/hold"))]);
    }

    #[test]
    fn a_list_items_block_ends_with_the_item() {
        // `/approve` is no longer in the list item, so not in its block; the
        // second fence opens a block that holds `/hold`.
        assert_eq!(commands("- ```\n/approve\n```\n/hold"), [approve(None)]);
        assert_eq!(commands("2. ```\n/approve\n```\n/hold"), [approve(None)]);
        // Indented less than the inner item's fence: that item ended.
        assert_eq!(commands("- - ```\n  /hold"), [Command::Hold]);
        assert_eq!(commands("- - ```\n    /hold"), []);
    }

    #[test]
    fn inline_code_with_three_backticks_is_not_a_fence() {
        // A backtick fence's info string may not hold a backtick.
        assert_eq!(commands("```inline``` code\n/hold"), [Command::Hold]);
    }

    #[test]
    fn quoted_lines_are_ignored() {
        assert!(parse("> /approve").is_empty());
        assert!(parse("   > /approve").is_empty());
        assert!(parse(">/approve").is_empty());
        assert!(parse(">> /approve").is_empty());
        assert_eq!(commands("> /approve\n\n/hold"), [Command::Hold]);
    }

    #[test]
    fn a_line_continuing_a_quote_is_quoted_text() {
        let parsed = parse("> can someone approve?\n/approve");
        let problem = Problem::InsideQuote {
            found: "/approve".into(),
        };
        assert_eq!(
            parsed,
            [Parsed {
                line: 2,
                result: Err(problem)
            }]
        );
    }

    #[test]
    fn an_empty_line_ends_a_quote() {
        assert_eq!(commands("> can someone approve?\n\n/approve"), [approve(None)]);
        assert_eq!(commands("> can someone approve?\n>\n/approve"), [approve(None)]);
    }

    #[test]
    fn a_no_break_space_line_does_not_end_a_quote() {
        assert!(commands("> quoted\n\u{a0}\n/approve").is_empty());
    }

    #[test]
    fn a_fence_after_a_quote_hides_its_lines() {
        assert!(commands("> quoted\n```\n/approve\n").is_empty());
    }

    #[test]
    fn a_fence_inside_an_html_comment_is_not_a_fence() {
        assert!(commands("<!--\n```\n-->\n```\n/approve\n```").is_empty());
    }

    #[test]
    fn html_comments_are_ignored() {
        assert!(commands("<!--\n/approve\n-->").is_empty());
        assert_eq!(commands("<!-- hidden -->\n/hold"), [Command::Hold]);
        assert_eq!(commands("<!--\n/approve\n-->\n/hold"), [Command::Hold]);
    }

    #[test]
    fn commands_are_lower_case() {
        let problem = |found: &str| Problem::NotLowerCase {
            found: found.into(),
            command: "/approve",
        };
        assert_eq!(only("/Approve"), Err(problem("/Approve")));
        assert_eq!(only("/APPROVE production"), Err(problem("/APPROVE")));
    }

    #[test]
    fn stage_names_are_lower_case() {
        let problem = Problem::InvalidStage {
            command: "/promote",
            stage: "Production".into(),
        };
        assert_eq!(only("/promote Production"), Err(problem.clone()));
        assert!(
            problem
                .to_string()
                .contains("stage names are lower case: `production`")
        );
    }

    #[test]
    fn crlf_and_lone_cr_end_lines() {
        let parsed = parse("LGTM\r\n/approve\r\n/hold\r/retest\r\n");
        let got: Vec<(usize, Command)> = parsed
            .into_iter()
            .filter_map(|p| Some((p.line, p.result.ok()?)))
            .collect();
        assert_eq!(
            got,
            [(2, approve(None)), (3, Command::Hold), (4, Command::Retest)]
        );
    }

    #[test]
    fn crlf_closes_a_fence() {
        assert_eq!(commands("```\r\n/approve\r\n```\r\n/hold\r\n"), [Command::Hold]);
    }

    #[test]
    fn more_than_the_limit_is_a_problem_and_the_rest_is_ignored() {
        let body = "/retest\n".repeat(MAX_COMMANDS + 5);
        let parsed = parse(&body);
        assert_eq!(parsed.len(), MAX_COMMANDS + 1);
        assert!(
            parsed[..MAX_COMMANDS]
                .iter()
                .all(|p| p.result == Ok(Command::Retest))
        );
        let last = &parsed[MAX_COMMANDS];
        assert_eq!(last.line, MAX_COMMANDS + 1);
        assert_eq!(last.result, Err(Problem::TooMany { limit: MAX_COMMANDS }));
    }

    #[test]
    fn exactly_the_limit_is_fine() {
        let body = "/retest\n".repeat(MAX_COMMANDS);
        assert_eq!(commands(&body).len(), MAX_COMMANDS);
    }

    #[test]
    fn an_unknown_command_suggests_the_closest() {
        let unknown = |body: &str| match only(body) {
            Err(Problem::Unknown { suggestion, .. }) => suggestion,
            other => panic!("{body}: {other:?}"),
        };
        assert_eq!(unknown("/aprove"), Some("/approve"));
        assert_eq!(unknown("/approved"), Some("/approve"));
        assert_eq!(unknown("/apporve"), Some("/approve"));
        assert_eq!(unknown("/hodl"), Some("/hold"));
        assert_eq!(unknown("/promte staging"), Some("/promote"));
        assert_eq!(unknown("/lgtm"), Some("/approve"));
        assert_eq!(unknown("/deploy"), None);
        assert_eq!(unknown(&format!("/{}", "a".repeat(500))), None);
    }

    #[test]
    fn promote_and_rollback_need_a_stage() {
        assert_eq!(
            only("/promote"),
            Err(Problem::MissingStage { command: "/promote" })
        );
        assert_eq!(
            only("/rollback"),
            Err(Problem::MissingStage { command: "/rollback" })
        );
    }

    #[test]
    fn a_stage_must_be_a_stage_name() {
        let invalid = |stage: &str| Problem::InvalidStage {
            command: "/promote",
            stage: stage.into(),
        };
        assert_eq!(only("/promote prod_1"), Err(invalid("prod_1")));
        assert_eq!(only("/promote 1st"), Err(invalid("1st")));
        let long = "a".repeat(33);
        assert!(matches!(
            only(&format!("/promote {long}")),
            Err(Problem::InvalidStage { .. })
        ));
        assert_eq!(
            only(&format!("/promote {}", "a".repeat(32))),
            Ok(Command::Promote {
                stage: "a".repeat(32)
            })
        );
        let approve_invalid = Problem::InvalidStage {
            command: "/approve",
            stage: "@org/team".into(),
        };
        assert_eq!(only("/approve @org/team"), Err(approve_invalid));
    }

    #[test]
    fn stage_names() {
        for good in ["a", "production", "eu-west-1", "s3"] {
            assert!(is_stage_name(good), "{good}");
        }
        for bad in ["", "-a", "1a", "Prod", "a_b", "a.b", "ä", &"a".repeat(33)] {
            assert!(!is_stage_name(bad), "{bad}");
        }
    }

    #[test]
    fn extra_arguments_are_a_problem() {
        let extra = |command, extra: &str| {
            Err(Problem::ExtraArguments {
                command,
                extra: extra.into(),
            })
        };
        assert_eq!(only("/hold because it is friday"), extra("/hold", "because"));
        assert_eq!(only("/retest please"), extra("/retest", "please"));
        assert_eq!(
            only("/approve staging production"),
            extra("/approve", "production")
        );
        assert_eq!(only("/promote staging now"), extra("/promote", "now"));
    }

    #[test]
    fn path_like_first_tokens_are_prose() {
        for body in [
            "/usr/bin/env is missing",
            "/",
            "// a comment",
            "/42",
            "/-x",
            "/éa",
        ] {
            assert!(parse(body).is_empty(), "{body}");
        }
    }

    #[test]
    fn problems_render_one_line_each() {
        let body = "Thanks!\n\n/aprove\n/promote\n/deploy";
        assert_eq!(
            problems(&parse(body)),
            [
                "line 3: unknown command `/aprove` — did you mean `/approve`?",
                "line 4: `/promote` needs a stage: `/promote <stage>`",
                "line 5: unknown command `/deploy` — the commands are `/approve [stage]`, `/hold`, \
                 `/unhold`, `/promote <stage>`, `/rollback <stage>`, `/retest`",
            ]
        );
    }

    #[test]
    fn echoed_text_is_code_and_clipped() {
        let rendered = problems(&parse("/hold @org/security"));
        assert_eq!(
            rendered,
            [
                "line 1: `/hold` takes no arguments (found `@org/security`) — usage: `/hold`; write any reason on another line"
            ]
        );
        let rendered = problems(&parse("/hold a`b"));
        assert!(rendered[0].contains("(found ``a`b``)"), "{rendered:?}");
        let long = format!("/hold {}", "x".repeat(1000));
        let rendered = problems(&parse(&long));
        assert!(
            rendered[0].contains(&format!("`{}…`", "x".repeat(MAX_ECHO))),
            "{rendered:?}"
        );
        let rendered = problems(&parse("/hold \u{202e}evil"));
        assert!(rendered[0].contains("\u{fffd}evil") && !rendered[0].contains('\u{202e}'));
    }

    #[test]
    fn reply_answers_every_command_line_in_order() {
        let parsed = parse("/approve\n/aprove\n/hold");
        let reply = reply(&parsed, |command| format!("done: {}", command.name()));
        assert_eq!(
            reply.as_deref(),
            Some(
                "- line 1, `/approve`: done: /approve\n\
                 - line 2: unknown command `/aprove` — did you mean `/approve`?\n\
                 - line 3, `/hold`: done: /hold"
            )
        );
    }

    #[test]
    fn a_comment_without_commands_gets_no_reply() {
        assert_eq!(reply(&parse("LGTM, ship it"), |_| String::new()), None);
    }

    #[test]
    fn no_reply_line_starts_with_a_slash() {
        let parsed = parse("/approve\n/x\n/promote Prod\n/hold a b");
        let reply = reply(&parsed, |c| c.to_string()).unwrap_or_default();
        assert!(reply.lines().all(|l| !l.trim_start().starts_with('/')), "{reply}");
        assert!(commands(&reply).is_empty());
    }

    // ---- fuzz-style: random bodies from a fixed seed ----

    /// Pieces lines are made of: commands, near-commands, Markdown syntax,
    /// unicode, white space.
    const FRAGMENTS: &[&str] = &[
        "/approve",
        "/approve production",
        "/hold",
        "/unhold",
        "/promote staging",
        "/rollback production",
        "/retest",
        "/aprove",
        "/Approve",
        "/promote",
        "/approve Prod",
        "/lgtm",
        "/",
        "//",
        "/usr/bin",
        "`",
        "```",
        "~~~",
        "````",
        ">",
        "> ",
        "<!--",
        "-->",
        "- ",
        "1. ",
        "#",
        " ",
        "  ",
        "    ",
        "\t",
        "x",
        "LGTM",
        "é",
        "日本語",
        "🚀",
        "\u{a0}",
        "\u{200b}",
        "\u{202e}",
        "\u{2028}",
        "\u{0}",
        "@alice",
        "staging",
    ];

    /// What a visible line may start with: never a fence, an HTML comment
    /// or a list marker, whose effect on the following lines the test would
    /// otherwise have to model.
    const STARTERS: &[&str] = &[
        "/approve",
        "/approve production",
        "/hold",
        "/unhold",
        "/promote staging",
        "/rollback prod",
        "/retest",
        "/aprove",
        "/APPROVE",
        "/promote",
        "/",
        "/x/y",
        "word",
        "é",
        "🚀",
        "\u{a0}",
        "#",
        ">",
        "@bob",
        "/approve\u{a0}staging",
        "/approve\u{200b}",
    ];

    fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
        from[rng.random_range(0..from.len())]
    }

    /// A line of random fragments; a very long one now and then.
    fn noise(rng: &mut StdRng) -> String {
        let mut line = String::new();
        for _ in 0..rng.random_range(0..8) {
            line.push_str(pick(rng, FRAGMENTS));
        }
        if rng.random_bool(0.02) {
            line.push_str(&pick(rng, FRAGMENTS).repeat(rng.random_range(100..3000)));
        }
        line
    }

    /// A random body, and which of its lines (from 1) are inside a fence or
    /// a quote: no command may come from those.
    fn body(rng: &mut StdRng) -> (String, Vec<usize>) {
        let mut lines: Vec<String> = Vec::new();
        let mut hidden = Vec::new();
        let blocks = rng.random_range(1..12);
        for block in 0..blocks {
            match rng.random_range(0..5) {
                0 => fenced(rng, &mut lines, &mut hidden, block + 1 == blocks, false),
                1 => fenced(rng, &mut lines, &mut hidden, block + 1 == blocks, true),
                2 => {
                    for _ in 0..rng.random_range(1..4) {
                        let indent = " ".repeat(rng.random_range(0..4));
                        lines.push(format!("{indent}>{}", noise(rng)));
                        hidden.push(lines.len());
                    }
                }
                _ => {
                    for _ in 0..rng.random_range(1..5) {
                        let indent = " ".repeat(rng.random_range(0..6));
                        let rest = if rng.random_bool(0.4) {
                            String::new()
                        } else {
                            noise(rng)
                        };
                        lines.push(format!("{indent}{}{rest}", pick(rng, STARTERS)));
                    }
                }
            }
            if rng.random_bool(0.5) {
                lines.push(String::new());
            }
        }
        let mut text = String::new();
        for line in &lines {
            text.push_str(line);
            text.push_str(if rng.random_bool(0.3) { "\r\n" } else { "\n" });
        }
        (text, hidden)
    }

    /// Appends a fenced block of noise, at the top level or in a list item
    /// (`- ```` and content indented to match); left open when `last`
    /// allows it.
    fn fenced(rng: &mut StdRng, lines: &mut Vec<String>, hidden: &mut Vec<usize>, last: bool, in_list: bool) {
        let marker = if rng.random_bool(0.5) { '`' } else { '~' };
        let fence = marker.to_string().repeat(rng.random_range(6..9));
        let info = pick(rng, &["", "rust", " yaml", "sh {.x}"]);
        let (opener, inside) = match in_list {
            true => ("- ".to_owned(), "  ".to_owned()),
            false => (" ".repeat(rng.random_range(0..4)), String::new()),
        };
        lines.push(format!("{opener}{fence}{info}"));
        hidden.push(lines.len());
        for _ in 0..rng.random_range(0..6) {
            let mut content = format!("{}{}", pick(rng, FRAGMENTS), noise(rng));
            // Content that would close the fence is not content.
            if content.trim_start_matches([' ', '\t']).starts_with(&fence) {
                content.insert(0, 'x');
            }
            lines.push(format!("{inside}{content}"));
            hidden.push(lines.len());
        }
        if last && rng.random_bool(0.3) {
            return;
        }
        let indent = if in_list {
            inside
        } else {
            " ".repeat(rng.random_range(0..4))
        };
        lines.push(format!("{indent}{fence}{}", marker.to_string().repeat(2)));
        hidden.push(lines.len());
    }

    #[test]
    fn fuzz_random_bodies_never_run_hidden_commands() {
        let mut rng = StdRng::seed_from_u64(0x5EED_C0DE);
        let mut seen_commands = 0;
        for _ in 0..4000 {
            let (body, hidden) = body(&mut rng);
            let parsed = parse(&body);
            assert_eq!(parsed, parse(&body), "not deterministic: {body:?}");
            assert!(parsed.len() <= MAX_COMMANDS + 1);
            let all: Vec<&str> = lines(&body).collect();
            for p in &parsed {
                let Ok(command) = &p.result else { continue };
                seen_commands += 1;
                assert!(
                    !hidden.contains(&p.line),
                    "{command:?} from hidden line {} of {body:?}",
                    p.line
                );
                let line = all.get(p.line - 1).copied().unwrap_or_default();
                assert!(
                    line.trim_start_matches(' ').starts_with(command.name()),
                    "{line:?}"
                );
            }
        }
        // The generator does make live commands: the test tests something.
        assert!(seen_commands > 1000, "{seen_commands}");
    }

    #[test]
    fn fuzz_random_characters_never_panic() {
        const ALPHABET: &[char] = &[
            '/', 'a', 'p', 'r', 'o', 'v', 'e', ' ', '\t', '\n', '\r', '`', '~', '>', '<', '!', '-', '1', '.',
            'é', '🚀', '\u{a0}', '\u{202e}', '\u{0}', 'A',
        ];
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..4000 {
            let len = rng.random_range(0..400);
            let body: String = (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect();
            let parsed = parse(&body);
            assert_eq!(parsed, parse(&body));
            assert!(parsed.len() <= MAX_COMMANDS + 1);
            let _ = problems(&parsed);
            let _ = reply(&parsed, |c| c.to_string());
        }
    }
}
