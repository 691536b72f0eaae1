//! A bake file's own functions:
//!
//! ```hcl
//! function "tag" {
//!   params = [name, tag]
//!   result = ["${name}:${tag}"]
//! }
//! ```
//!
//! hcl-rs calls functions through plain `fn` pointers, which cannot carry a
//! function's body. So each user function is given one of a fixed pool of
//! trampolines, and the bodies live, for the length of one evaluation, in a
//! thread-local table that [`Scope`] installs and removes. A body sees the
//! file's variables, its parameters, and every function.

use super::parse::RawBlock;
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Expression, Value};
use std::cell::RefCell;

/// One `function` block.
#[derive(Debug, Clone)]
pub struct UserFn {
    pub name: String,
    pub params: Vec<String>,
    pub variadic: Option<String>,
    pub result: Expression,
}

/// Deepest nesting of user-function calls (a function calling itself would
/// otherwise never end).
const MAX_DEPTH: usize = 32;

#[derive(Default)]
struct Table {
    funcs: Vec<UserFn>,
    vars: Vec<(String, Value)>,
    depth: usize,
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

/// While alive, the user functions and variables are callable on this thread.
pub struct Scope(());

impl Scope {
    pub fn new(funcs: Vec<UserFn>) -> Result<Scope, String> {
        if funcs.len() > POOL.len() {
            return Err(format!(
                "{} functions: kiln bake takes at most {}",
                funcs.len(),
                POOL.len()
            ));
        }
        TABLE.with(|t| {
            *t.borrow_mut() = Some(Table {
                funcs,
                ..Table::default()
            })
        });
        Ok(Scope(()))
    }

    /// The variables function bodies see (as they resolve).
    pub fn set_vars(&self, vars: Vec<(String, Value)>) {
        TABLE.with(|t| {
            if let Some(t) = t.borrow_mut().as_mut() {
                t.vars = vars;
            }
        });
    }

    /// Declare the user functions in `ctx`.
    pub fn declare(&self, ctx: &mut Context<'_>) {
        declare_all(ctx);
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        TABLE.with(|t| *t.borrow_mut() = None);
    }
}

fn declare_all(ctx: &mut Context<'_>) {
    let defs: Vec<(String, usize, bool)> = TABLE.with(|t| {
        t.borrow().as_ref().map_or(vec![], |t| {
            t.funcs
                .iter()
                .map(|f| (f.name.clone(), f.params.len(), f.variadic.is_some()))
                .collect()
        })
    });
    for (i, (name, n, variadic)) in defs.into_iter().enumerate() {
        let mut b = FuncDef::builder().params(vec![ParamType::Any; n]);
        if variadic {
            b = b.variadic_param(ParamType::Any);
        }
        ctx.declare_func(name, b.build(POOL[i]));
    }
}

fn call(i: usize, args: FuncArgs) -> Result<Value, String> {
    let (f, vars) = TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let t = t
            .as_mut()
            .ok_or("a user function called outside a bake evaluation")?;
        if t.depth >= MAX_DEPTH {
            return Err(format!(
                "user functions nest deeper than {MAX_DEPTH} calls (does one call itself?)"
            ));
        }
        t.depth += 1;
        let f = t.funcs.get(i).cloned().ok_or("unknown user function")?;
        Ok::<_, String>((f, t.vars.clone()))
    })?;
    let out = body(&f, vars, args);
    TABLE.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.depth = t.depth.saturating_sub(1);
        }
    });
    out
}

/// Evaluate `f`'s result with its arguments bound.
fn body(f: &UserFn, vars: Vec<(String, Value)>, args: FuncArgs) -> Result<Value, String> {
    {
        let mut ctx = Context::new();
        super::funcs::declare(&mut ctx);
        declare_all(&mut ctx);
        for (k, v) in vars {
            ctx.declare_var(k, v);
        }
        let values = args.into_values();
        for (p, v) in f.params.iter().zip(values.iter()) {
            ctx.declare_var(p.as_str(), v.clone());
        }
        if let Some(rest) = &f.variadic {
            let extra: Vec<Value> = values.iter().skip(f.params.len()).cloned().collect();
            ctx.declare_var(rest.as_str(), Value::Array(extra));
        }
        f.result
            .evaluate(&ctx)
            .map_err(|e| format!("in function {:?}: {e}", f.name))
    }
}

macro_rules! pool {
    ($($i:literal)*) => {
        const POOL: &[hcl::eval::Func] = &[$({
            fn trampoline(a: FuncArgs) -> Result<Value, String> {
                call($i, a)
            }
            trampoline
        }),*];
    };
}
pool!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);

fn names(e: &Expression) -> Option<Vec<String>> {
    let one = |e: &Expression| match e {
        Expression::Variable(v) => Some(v.as_str().to_string()),
        _ => None,
    };
    match e {
        Expression::Array(a) => a.iter().map(one).collect(),
        other => one(other).map(|n| vec![n]),
    }
}

/// A `function` block as a [`UserFn`].
pub fn from_block(b: &RawBlock) -> Result<UserFn, String> {
    for a in &b.attrs {
        if !matches!(a.key.as_str(), "params" | "variadic_param" | "result") {
            return Err(format!(
                "{}: function {:?}: unknown key {:?} (params, variadic_param, result)",
                a.at, b.name, a.key
            ));
        }
    }
    if super::funcs::known(&b.name) {
        return Err(format!(
            "{}: function {:?} is already one of bake's built-in functions",
            b.at, b.name
        ));
    }
    let params = match b.attr("params") {
        Some(a) => names(&a.expr).ok_or_else(|| {
            format!(
                "{}: function {:?}: params is a list of names, as in params = [a, b]",
                a.at, b.name
            )
        })?,
        None => vec![],
    };
    let variadic = match b.attr("variadic_param") {
        Some(a) => Some(
            names(&a.expr)
                .and_then(|n| n.into_iter().next())
                .ok_or_else(|| {
                    format!("{}: function {:?}: variadic_param is a name", a.at, b.name)
                })?,
        ),
        None => None,
    };
    let result = b
        .attr("result")
        .ok_or_else(|| format!("{}: function {:?} has no result", b.at, b.name))?
        .expr
        .clone();
    Ok(UserFn {
        name: b.name.clone(),
        params,
        variadic,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, params: &[&str], variadic: Option<&str>, result: &str) -> UserFn {
        UserFn {
            name: name.into(),
            params: params.iter().map(|s| s.to_string()).collect(),
            variadic: variadic.map(str::to_string),
            result: hcl::edit::parser::parse_expr(result).unwrap().into(),
        }
    }

    fn eval(scope: &Scope, src: &str) -> Result<Value, String> {
        let mut ctx = Context::new();
        super::super::funcs::declare(&mut ctx);
        scope.declare(&mut ctx);
        let e: Expression = hcl::edit::parser::parse_expr(src).unwrap().into();
        e.evaluate(&ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn user_functions_call_each_other_and_see_variables() {
        let scope = Scope::new(vec![
            f("increment", &["number"], None, "number + 1"),
            f(
                "tag",
                &["name", "t"],
                None,
                r#""${REPO}/${name}:${increment(t)}""#,
            ),
            f("all", &[], Some("xs"), r#"join("-", xs)"#),
        ])
        .unwrap();
        scope.set_vars(vec![("REPO".into(), Value::String("r".into()))]);
        assert_eq!(eval(&scope, "increment(123)"), Ok(Value::from(124)));
        assert_eq!(eval(&scope, r#"tag("app", 1)"#), Ok(Value::from("r/app:2")));
        assert_eq!(eval(&scope, r#"all("a", "b")"#), Ok(Value::from("a-b")));
    }

    #[test]
    fn a_function_that_calls_itself_is_an_error() {
        let scope = Scope::new(vec![f("loop", &["x"], None, "loop(x)")]).unwrap();
        let e = eval(&scope, "loop(1)").unwrap_err();
        assert!(e.contains("deeper than"), "{e}");
    }
}
