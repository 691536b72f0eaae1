//! Bake files as text → blocks of unevaluated attributes, each with the file
//! and line it came from. HCL is parsed by hcl-edit (which keeps spans); JSON
//! is read as buildx reads it, every string a template (`"${TAG}"`).

use hcl::edit::structure::{Block, BlockLabel, Body, Structure};
use hcl::edit::Span;
use hcl::Expression;
use std::fmt;

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One `key = expression`.
#[derive(Debug, Clone)]
pub struct Attr {
    pub key: String,
    pub expr: Expression,
    pub at: Loc,
}

/// A labelled block (`target "app" { … }`): its attributes, and nested
/// blocks (a variable's `validation`).
#[derive(Debug, Clone)]
pub struct RawBlock {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub blocks: Vec<(String, RawBlock)>,
    pub at: Loc,
}

impl RawBlock {
    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.key == key)
    }
}

/// One file's definitions, in the order written.
#[derive(Debug, Clone, Default)]
pub struct RawFile {
    pub variables: Vec<RawBlock>,
    pub functions: Vec<RawBlock>,
    pub groups: Vec<RawBlock>,
    pub targets: Vec<RawBlock>,
    /// Top-level attributes (`TAG = "x"`): variables the environment cannot set.
    pub globals: Vec<Attr>,
}

/// Parse `text` as HCL, or as JSON when `name` ends in `.json`.
pub fn parse(name: &str, text: &str) -> Result<RawFile, String> {
    if name.ends_with(".json") {
        json(name, text)
    } else {
        hcl_file(name, text)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn hcl_file(name: &str, text: &str) -> Result<RawFile, String> {
    let body: Body = hcl::edit::parser::parse_body(text).map_err(|e| {
        let l = e.location();
        format!(
            "{name}:{}:{}: {}",
            l.line(),
            l.column(),
            crate::clip::clip(e.message())
        )
    })?;
    let loc = |span: Option<std::ops::Range<usize>>| Loc {
        file: name.to_string(),
        line: span.map_or(0, |s| line_of(text, s.start)),
    };
    let mut out = RawFile::default();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => out.globals.push(Attr {
                key: a.key.as_str().to_string(),
                expr: a.value.clone().into(),
                at: loc(a.span()),
            }),
            Structure::Block(b) => {
                let kind = b.ident.as_str();
                let raw = block(b, &loc)?;
                match kind {
                    "variable" => out.variables.push(raw),
                    "function" => out.functions.push(raw),
                    "group" => out.groups.push(raw),
                    "target" => out.targets.push(raw),
                    other => {
                        return Err(format!(
                            "{}: unknown block {other:?}: a bake file has target, group, variable and function blocks",
                            raw.at
                        ))
                    }
                }
            }
        }
    }
    Ok(out)
}

fn label(l: &BlockLabel) -> String {
    match l {
        BlockLabel::Ident(i) => i.as_str().to_string(),
        BlockLabel::String(s) => s.as_str().to_string(),
    }
}

fn block(
    b: &Block,
    loc: &dyn Fn(Option<std::ops::Range<usize>>) -> Loc,
) -> Result<RawBlock, String> {
    let at = loc(b.span());
    let kind = b.ident.as_str();
    let name = match b.labels.as_slice() {
        [l] => label(l),
        [] if kind == "validation" => String::new(),
        _ => {
            return Err(format!(
                "{at}: a {kind} block takes one name, as in {kind} \"NAME\" {{ … }}"
            ))
        }
    };
    let mut raw = RawBlock {
        name,
        attrs: vec![],
        blocks: vec![],
        at,
    };
    for s in b.body.iter() {
        match s {
            Structure::Attribute(a) => raw.attrs.push(Attr {
                key: a.key.as_str().to_string(),
                expr: a.value.clone().into(),
                at: loc(a.span()),
            }),
            Structure::Block(inner) => {
                let k = inner.ident.as_str().to_string();
                raw.blocks.push((k, block(inner, loc)?));
            }
        }
    }
    Ok(raw)
}

/// A JSON value as the HCL expression buildx makes of it: strings are
/// templates, so `"${TAG}"` interpolates.
fn json_expr(v: &serde_json::Value) -> Expression {
    use serde_json::Value as J;
    match v {
        J::Null => Expression::Null,
        J::Bool(b) => Expression::Bool(*b),
        J::Number(n) => n
            .as_i64()
            .map(hcl::Number::from)
            .or_else(|| n.as_f64().and_then(hcl::Number::from_f64))
            .map_or(Expression::Null, Expression::Number),
        J::String(s) => {
            Expression::TemplateExpr(Box::new(hcl::TemplateExpr::QuotedString(s.clone())))
        }
        J::Array(a) => Expression::Array(a.iter().map(json_expr).collect()),
        J::Object(o) => Expression::Object(
            o.iter()
                .map(|(k, v)| (hcl::ObjectKey::from(k.as_str()), json_expr(v)))
                .collect(),
        ),
    }
}

/// The line of the first `"needle"` at or after byte `from` (1 when absent).
fn json_line(text: &str, from: usize, needle: &str) -> (usize, usize) {
    let quoted = format!("\"{needle}\"");
    match text.get(from..).and_then(|t| t.find(&quoted)) {
        Some(i) => (line_of(text, from + i), from + i),
        None => (line_of(text, from), from),
    }
}

fn json(name: &str, text: &str) -> Result<RawFile, String> {
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("{name}:{}:{}: {e}", e.line(), e.column()))?;
    let Some(top) = doc.as_object() else {
        return Err(format!("{name}:1: a bake file in JSON is an object"));
    };
    let mut out = RawFile::default();
    for (kind, v) in top {
        let (line, start) = json_line(text, 0, kind);
        let at = Loc {
            file: name.to_string(),
            line,
        };
        let list = match kind.as_str() {
            "variable" => &mut out.variables,
            "group" => &mut out.groups,
            "target" => &mut out.targets,
            "function" => &mut out.functions,
            _ => {
                out.globals.push(Attr {
                    key: kind.clone(),
                    expr: json_expr(v),
                    at,
                });
                continue;
            }
        };
        let Some(blocks) = v.as_object() else {
            return Err(format!("{at}: {kind:?} holds an object of named blocks"));
        };
        for (bname, body) in blocks {
            let (bline, bstart) = json_line(text, start, bname);
            let Some(attrs) = body.as_object() else {
                return Err(format!(
                    "{name}:{bline}: {kind} {bname:?} is an object of attributes"
                ));
            };
            let mut raw = RawBlock {
                name: bname.clone(),
                attrs: vec![],
                blocks: vec![],
                at: Loc {
                    file: name.to_string(),
                    line: bline,
                },
            };
            for (k, v) in attrs {
                // A function's params are names, not strings to interpolate.
                let expr = match (kind.as_str(), k.as_str(), v) {
                    ("function", "params" | "variadic_param", _) => json_names(v),
                    ("function", "result", serde_json::Value::String(s)) => {
                        hcl::edit::parser::parse_expr(s)
                            .map(Expression::from)
                            .map_err(|e| format!("{name}:{bline}: function {bname:?}: {e}"))?
                    }
                    _ => json_expr(v),
                };
                raw.attrs.push(Attr {
                    key: k.clone(),
                    expr,
                    at: Loc {
                        file: name.to_string(),
                        line: json_line(text, bstart, k).0,
                    },
                });
            }
            list.push(raw);
        }
    }
    Ok(out)
}

/// `["a", "b"]` in JSON → the variables `a`, `b`, as HCL writes params.
fn json_names(v: &serde_json::Value) -> Expression {
    let var = |s: &str| {
        hcl::Identifier::new(s)
            .map(|i| Expression::Variable(i.into()))
            .unwrap_or(Expression::Null)
    };
    match v {
        serde_json::Value::Array(a) => {
            Expression::Array(a.iter().filter_map(|x| x.as_str()).map(var).collect())
        }
        serde_json::Value::String(s) => var(s),
        _ => Expression::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_blocks_keep_their_lines() {
        let f = parse(
            "docker-bake.hcl",
            "variable \"TAG\" {\n  default = \"latest\"\n}\n\ntarget \"app\" {\n  tags = [\"x:${TAG}\"]\n  network = \"host\"\n}\nFOO = 1\n",
        )
        .unwrap();
        assert_eq!(f.variables[0].name, "TAG");
        assert_eq!(f.targets[0].at.line, 5);
        assert_eq!(
            f.targets[0].attr("network").unwrap().at.to_string(),
            "docker-bake.hcl:7"
        );
        assert_eq!(f.globals[0].key, "FOO");
    }

    #[test]
    fn json_strings_are_templates_and_keys_have_lines() {
        let f = parse(
            "docker-bake.json",
            "{\n  \"variable\": {\"TAG\": {\"default\": \"latest\"}},\n  \"target\": {\n    \"app\": {\n      \"tags\": [\"x:${TAG}\"],\n      \"network\": \"host\"\n    }\n  }\n}\n",
        )
        .unwrap();
        let t = &f.targets[0];
        assert_eq!(t.at.line, 4);
        assert_eq!(t.attr("network").unwrap().at.line, 6);
        assert!(matches!(
            &t.attr("tags").unwrap().expr,
            Expression::Array(a) if matches!(a[0], Expression::TemplateExpr(_))
        ));
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let e = parse("b.hcl", "target \"a\" {\n  tags = [\n}\n").unwrap_err();
        assert!(e.starts_with("b.hcl:3:"), "{e}");
        let e = parse("b.hcl", "service \"a\" {}\n").unwrap_err();
        assert!(e.contains("b.hcl:1: unknown block \"service\""), "{e}");
        let e = parse("b.json", "{\"target\": [1]}").unwrap_err();
        assert!(e.contains("b.json:1"), "{e}");
        assert!(parse("b.json", "{").unwrap_err().starts_with("b.json:1:"));
    }
}
