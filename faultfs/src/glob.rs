//! Path patterns for `faultfs corrupt`: which files under a root it may damage.
//!
//! A pattern is matched against a path relative to the root, components separated by `/`:
//! - `*` matches any run of characters within one component (including none, and a leading dot);
//! - `?` matches one character, `[abc]`, `[a-z]` and `[!a-z]` one character of (not of) a class;
//! - `**` as a whole component matches zero or more components (`a/**/b` matches `a/b` and
//!   `a/x/y/b`; `**/x.log` matches `x.log` at any depth; a trailing `**` everything below);
//!   `**` inside a component is just `*`;
//! - anything else matches itself; `\` makes the next character literal.
//!
//! Patterns are relative: a leading `/` or a `..` component is refused, so nothing outside the root
//! can ever match. Empty and `.` components are ignored (`./a//b` is `a/b`).

use std::fmt;

/// A parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    comps: Vec<Comp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Comp {
    /// `**`: zero or more whole components.
    AnyDirs,
    /// One component.
    Name(Vec<Tok>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[...]`: inclusive ranges, negated with `!` or `^`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Pattern {
    /// Parses `text`.
    pub fn new(text: &str) -> Result<Pattern, PatternError> {
        let err = |reason| PatternError {
            pattern: text.to_string(),
            reason,
        };
        if text.starts_with('/') {
            return Err(err("patterns are relative to --root; remove the leading /"));
        }
        let mut comps = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(err("`..` would leave --root")),
                "**" => {
                    // `**/**` is the same as `**`.
                    if comps.last() != Some(&Comp::AnyDirs) {
                        comps.push(Comp::AnyDirs);
                    }
                }
                _ => comps.push(Comp::Name(parse_component(part).map_err(err)?)),
            }
        }
        if comps.is_empty() {
            return Err(err("the pattern names no file"));
        }
        Ok(Pattern {
            text: text.to_string(),
            comps,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the relative path `rel` (components separated by `/`) matches.
    pub fn matches(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        match_comps(&self.comps, &parts)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::new(s)
    }
}

fn parse_component(part: &str) -> Result<Vec<Tok>, &'static str> {
    let mut toks = Vec::new();
    let mut chars = part.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                toks.push(Tok::Star);
            }
            '?' => toks.push(Tok::One),
            '\\' => toks.push(Tok::Lit(chars.next().ok_or("trailing `\\`")?)),
            '[' => {
                let negated = matches!(chars.peek(), Some('!' | '^'));
                if negated {
                    chars.next();
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = chars.next().ok_or("unclosed `[`")?;
                    // A `]` right after `[` or `[!` is a member, as in shells.
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        chars.next().ok_or("unclosed `[`")?
                    } else {
                        c
                    };
                    let mut ahead = chars.clone();
                    if ahead.next() == Some('-') && ahead.peek().is_some_and(|&h| h != ']') {
                        chars.next();
                        let hi = chars.next().expect("peeked");
                        if hi < lo {
                            return Err("reversed range in `[...]`");
                        }
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

fn match_comps(pat: &[Comp], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((Comp::AnyDirs, rest)) => {
            (0..=path.len()).any(|skip| match_comps(rest, &path[skip..]))
        }
        Some((Comp::Name(toks), rest)) => match path.split_first() {
            Some((name, tail)) => match_name(toks, name) && match_comps(rest, tail),
            None => false,
        },
    }
}

fn tok_matches(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Lit(l) => *l == c,
        Tok::One => true,
        Tok::Star => unreachable!("stars are handled by match_name"),
        Tok::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

/// One component against one name: the usual linear wildcard match with backtracking to the last
/// star (every token but `*` takes exactly one character).
fn match_name(toks: &[Tok], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if t < toks.len() && toks[t] == Tok::Star {
            star = Some((t, n));
            t += 1;
        } else if t < toks.len() && tok_matches(&toks[t], name[n]) {
            t += 1;
            n += 1;
        } else if let Some((st, sn)) = star {
            t = st + 1;
            n = sn + 1;
            star = Some((st, sn + 1));
        } else {
            return false;
        }
    }
    toks[t..].iter().all(|tok| *tok == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pat: &str, path: &str) -> bool {
        Pattern::new(pat).unwrap().matches(path)
    }

    #[test]
    fn star_stays_within_one_component() {
        assert!(m(
            "etcd/member/wal/*.wal",
            "etcd/member/wal/0000000000000000-0000000000000000.wal"
        ));
        assert!(m("etcd/member/wal/*.wal", "etcd/member/wal/.wal"));
        assert!(!m("etcd/member/wal/*.wal", "etcd/member/wal/sub/0.wal"));
        assert!(!m("etcd/member/wal/*.wal", "etcd/member/wal/0.tmp"));
        assert!(!m("etcd/member/wal/*.wal", "etcd/member/snap/0.wal"));
        assert!(!m("*.wal", "dir/a.wal"));
        assert!(m("*", "a"));
        assert!(!m("*", "a/b"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyybc"));
        assert!(!m("a*b*c", "axxbyybcd"));
        assert!(m("wal-?.log", "wal-1.log"));
        assert!(!m("wal-?.log", "wal-12.log"));
    }

    #[test]
    fn double_star_spans_zero_or_more_components() {
        assert!(m("**/wal-*.log", "wal-1.log"));
        assert!(m("**/wal-*.log", "a/wal-1.log"));
        assert!(m("**/wal-*.log", "a/b/c/wal-1.log"));
        assert!(!m("**/wal-*.log", "a/b/c/wal-1.log/x"));
        assert!(m("jetstream/**/*.blk", "jetstream/1.blk"));
        assert!(m("jetstream/**/*.blk", "jetstream/$G/streams/s/msgs/1.blk"));
        assert!(!m("jetstream/**/*.blk", "other/jetstream/1.blk"));
        assert!(!m("jetstream/**/*.blk", "jetstream/1.idx"));
        assert!(m("data/**", "data/x"));
        assert!(m("data/**", "data/x/y"));
        assert!(m("**", "anything/at/all"));
        assert!(m("a/**/**/b", "a/b"));
        // `**` inside a component is a plain `*`.
        assert!(m("wal**.log", "wal-1.log"));
        assert!(!m("wal**.log", "wal/1.log"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(m("[0-9]*.snap", "7-x.snap"));
        assert!(!m("[0-9]*.snap", "x.snap"));
        assert!(m("[!0-9]*", "x"));
        assert!(!m("[!0-9]*", "7"));
        assert!(m("[]x]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m(r"\*", "*"));
        assert!(!m(r"\*", "a"));
    }

    #[test]
    fn nothing_outside_the_root_can_match() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "", "/", ".", "./"] {
            assert!(Pattern::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Pattern::new("[a-").is_err());
        assert!(Pattern::new("[z-a]").is_err());
        assert!(Pattern::new("a\\").is_err());
        // `.` and empty components are ignored, and the path is always relative to the root.
        assert!(m("./a//b", "a/b"));
        assert!(!m("x", "../x"));
    }
}
