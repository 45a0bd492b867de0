//! Options files (`re6stnet.conf`, `re6st-registry.conf`, ...), as
//! upstream's argument parser reads them: an argument `@FILE` is replaced
//! by the arguments the file holds.
//!
//! Each non-blank line that is not a comment is split like a POSIX shell
//! would (quotes, backslashes); its first word `key` becomes `--key` when
//! that is a known long option and `-key` otherwise, so `v 4` means `-v 4`
//! and `O--verb` means `-O--verb`. A line starting with `@` includes
//! another file. A `#` only starts a comment at the beginning of a line
//! (after blanks), as upstream.
//!
//! Sans-IO: the caller passes a loader that returns a file's text.

use thiserror::Error;

/// Includes deeper than this are refused (and catch include cycles).
pub const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptionsError {
    #[error("{file}:{line}: {why}")]
    Syntax {
        file: String,
        line: usize,
        why: &'static str,
    },
    #[error("cannot read options file {file}: {why}")]
    Load { file: String, why: String },
    #[error("options file {0} includes itself")]
    Cycle(String),
    #[error("options files nested deeper than {MAX_DEPTH} levels at {0}")]
    TooDeep(String),
}

/// Splits one line like Python's `shlex.split` (POSIX mode).
pub fn shell_split(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"' | '$' | '`' | '\n')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("no closing quotation"),
                        },
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("no escaped character"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The arguments one line of an options file stands for.
pub fn line_to_args(
    line: &str,
    is_long_option: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, &'static str> {
    let before_comment = line.split('#').next().unwrap_or_default();
    if before_comment.trim_end().is_empty() {
        return Ok(Vec::new());
    }
    if line.starts_with('@') {
        return Ok(vec![line.to_owned()]);
    }
    let mut words = shell_split(line)?.into_iter();
    let Some(key) = words.next() else {
        return Ok(Vec::new());
    };
    let long = format!("--{key}");
    let first = if is_long_option(&long) {
        long
    } else {
        format!("-{key}")
    };
    Ok(std::iter::once(first).chain(words).collect())
}

/// Expands every `@FILE` argument (recursively) into the arguments that
/// file holds. Other arguments are kept in place.
pub fn expand<E: std::fmt::Display>(
    args: impl IntoIterator<Item = String>,
    is_long_option: &dyn Fn(&str) -> bool,
    load: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<Vec<String>, OptionsError> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for arg in args {
        expand_one(arg, is_long_option, load, &mut stack, &mut out)?;
    }
    Ok(out)
}

fn expand_one<E: std::fmt::Display>(
    arg: String,
    is_long_option: &dyn Fn(&str) -> bool,
    load: &mut dyn FnMut(&str) -> Result<String, E>,
    stack: &mut Vec<String>,
    out: &mut Vec<String>,
) -> Result<(), OptionsError> {
    let Some(file) = arg.strip_prefix('@') else {
        out.push(arg);
        return Ok(());
    };
    if stack.iter().any(|f| f == file) {
        return Err(OptionsError::Cycle(file.to_owned()));
    }
    if stack.len() >= MAX_DEPTH {
        return Err(OptionsError::TooDeep(file.to_owned()));
    }
    let text = load(file).map_err(|e| OptionsError::Load {
        file: file.to_owned(),
        why: e.to_string(),
    })?;
    stack.push(file.to_owned());
    for (n, line) in text.lines().enumerate() {
        let args = line_to_args(line, is_long_option).map_err(|why| OptionsError::Syntax {
            file: file.to_owned(),
            line: n + 1,
            why,
        })?;
        for a in args {
            expand_one(a, is_long_option, load, stack, out)?;
        }
    }
    stack.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn known(o: &str) -> bool {
        ["--registry", "--ca", "--verbose", "--ip"].contains(&o)
    }

    fn run(files: &[(&str, &str)], args: &[&str]) -> Result<Vec<String>, OptionsError> {
        let files: HashMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut load = |f: &str| files.get(f).cloned().ok_or("no such file");
        expand(args.iter().map(|s| s.to_string()), &known, &mut load)
    }

    #[test]
    fn lines_become_options() {
        let conf = "registry http://x/\n# comment\n  \n   # indented comment\nca 'my ca.crt'\nv 4\nO--verb\nO3\nip a\\ b\n";
        assert_eq!(
            run(&[("c", conf)], &["-x", "@c", "--y"]).unwrap(),
            [
                "-x",
                "--registry",
                "http://x/",
                "--ca",
                "my ca.crt",
                "-v",
                "4",
                "-O--verb",
                "-O3",
                "--ip",
                "a b",
                "--y"
            ]
        );
    }

    #[test]
    fn includes_and_their_errors() {
        assert_eq!(
            run(&[("a", "@b\nverbose 1"), ("b", "ca x")], &["@a"]).unwrap(),
            ["--ca", "x", "--verbose", "1"]
        );
        assert_eq!(
            run(&[("a", "@a")], &["@a"]),
            Err(OptionsError::Cycle("a".into()))
        );
        assert!(matches!(
            run(&[], &["@missing"]),
            Err(OptionsError::Load { .. })
        ));
        assert_eq!(
            run(&[("a", "ca x\nca 'unclosed")], &["@a"]),
            Err(OptionsError::Syntax {
                file: "a".into(),
                line: 2,
                why: "no closing quotation"
            })
        );
        let chain: Vec<(String, String)> = (0..20)
            .map(|i| (format!("f{i}"), format!("@f{}", i + 1)))
            .collect();
        let chain: Vec<(&str, &str)> = chain
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert!(matches!(
            run(&chain, &["@f0"]),
            Err(OptionsError::TooDeep(_))
        ));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_split(r#"a "b \"c\" \d" 'e\' f"#).unwrap(),
            ["a", r#"b "c" \d"#, r"e\", "f"]
        );
        assert_eq!(shell_split("''").unwrap(), [""]);
        assert!(shell_split("a\\").is_err());
    }
}
