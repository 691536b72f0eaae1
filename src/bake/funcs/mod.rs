//! buildx's standard library of HCL functions (go-cty's stdlib and buildx's
//! own), as real bake files use them. Arguments convert as cty converts them:
//! a number where a string is wanted is its decimal text, a numeric string
//! is a number, "true"/"false" are booleans.
//!
//! Functions that need unevaluated arguments (`try`, `can`) and a few rare
//! ones (cidr*, bcrypt, csvdecode, formatdate, uuid*) are not here: a call
//! is an error naming the function, never a wrong value.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};
use sha2::Digest;

type R = Result<Value, String>;

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

pub fn to_str(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(num_text(n)),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("a string is required, not a {}", kind(other))),
    }
}

/// A number as cty writes it: integers without a fraction.
pub fn num_text(n: &Number) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

fn to_f64(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| "a number is out of range".into()),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("a number is required, not {s:?}")),
        other => Err(format!("a number is required, not a {}", kind(other))),
    }
}

fn to_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(format!("a bool is required, not a {}", kind(other))),
    }
}

fn to_list(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        other => Err(format!("a list is required, not a {}", kind(other))),
    }
}

fn to_map(v: &Value) -> Result<Map<String, Value>, String> {
    match v {
        Value::Object(o) => Ok(o.clone()),
        other => Err(format!("a map is required, not a {}", kind(other))),
    }
}

pub fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

fn a(args: &FuncArgs, i: usize) -> &Value {
    &args[i]
}

fn rest(args: &FuncArgs, from: usize) -> Vec<Value> {
    args.iter().skip(from).cloned().collect()
}

fn s1(args: FuncArgs, f: fn(&str) -> String) -> R {
    Ok(Value::String(f(&to_str(a(&args, 0))?)))
}

fn n2(args: FuncArgs, f: fn(f64, f64) -> Result<f64, String>) -> R {
    Ok(num(f(to_f64(a(&args, 0))?, to_f64(a(&args, 1))?)?))
}

fn cmp2(args: FuncArgs, f: fn(f64, f64) -> bool) -> R {
    Ok(Value::Bool(f(to_f64(a(&args, 0))?, to_f64(a(&args, 1))?)))
}

/// Equality as cty has it across the conversions bake files lean on
/// (`notequal("", TAG)`, `equal(1, "1")`).
fn same(x: &Value, y: &Value) -> bool {
    match (x, y) {
        (Value::Number(_) | Value::String(_), Value::Number(_) | Value::String(_))
        | (Value::Bool(_), Value::String(_))
        | (Value::String(_), Value::Bool(_)) => to_str(x).ok() == to_str(y).ok(),
        _ => x == y,
    }
}

fn add(x: FuncArgs) -> R {
    n2(x, |a, b| Ok(a + b))
}
fn subtract(x: FuncArgs) -> R {
    n2(x, |a, b| Ok(a - b))
}
fn multiply(x: FuncArgs) -> R {
    n2(x, |a, b| Ok(a * b))
}
fn divide(x: FuncArgs) -> R {
    n2(x, |a, b| {
        if b == 0.0 {
            Err("division by zero".into())
        } else {
            Ok(a / b)
        }
    })
}
fn modulo(x: FuncArgs) -> R {
    n2(x, |a, b| {
        if b == 0.0 {
            Err("modulo by zero".into())
        } else {
            Ok(a % b)
        }
    })
}
fn pow(x: FuncArgs) -> R {
    n2(x, |a, b| Ok(a.powf(b)))
}
fn absolute(x: FuncArgs) -> R {
    Ok(num(to_f64(a(&x, 0))?.abs()))
}
fn negate(x: FuncArgs) -> R {
    Ok(num(-to_f64(a(&x, 0))?))
}
fn ceil(x: FuncArgs) -> R {
    Ok(num(to_f64(a(&x, 0))?.ceil()))
}
fn floor(x: FuncArgs) -> R {
    Ok(num(to_f64(a(&x, 0))?.floor()))
}
fn int(x: FuncArgs) -> R {
    Ok(num(to_f64(a(&x, 0))?.trunc()))
}
fn max(x: FuncArgs) -> R {
    let v: Result<Vec<f64>, String> = x.iter().map(to_f64).collect();
    v?.into_iter()
        .reduce(f64::max)
        .map(num)
        .ok_or_else(|| "max needs at least one number".into())
}
fn min(x: FuncArgs) -> R {
    let v: Result<Vec<f64>, String> = x.iter().map(to_f64).collect();
    v?.into_iter()
        .reduce(f64::min)
        .map(num)
        .ok_or_else(|| "min needs at least one number".into())
}
fn parseint(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let base = to_f64(a(&x, 1))? as u32;
    if !(2..=36).contains(&base) {
        return Err(format!("base {base} is not between 2 and 36"));
    }
    i64::from_str_radix(&s, base)
        .map(|n| Value::Number(Number::from(n)))
        .map_err(|_| format!("{s:?} is not a number in base {base}"))
}
fn greaterthan(x: FuncArgs) -> R {
    cmp2(x, |a, b| a > b)
}
fn greaterthanorequalto(x: FuncArgs) -> R {
    cmp2(x, |a, b| a >= b)
}
fn lessthan(x: FuncArgs) -> R {
    cmp2(x, |a, b| a < b)
}
fn lessthanorequalto(x: FuncArgs) -> R {
    cmp2(x, |a, b| a <= b)
}
fn equal(x: FuncArgs) -> R {
    Ok(Value::Bool(same(a(&x, 0), a(&x, 1))))
}
fn notequal(x: FuncArgs) -> R {
    Ok(Value::Bool(!same(a(&x, 0), a(&x, 1))))
}
fn and(x: FuncArgs) -> R {
    let mut all = true;
    for v in x.iter() {
        all &= to_bool(v)?;
    }
    Ok(Value::Bool(all))
}
fn or(x: FuncArgs) -> R {
    let mut any = false;
    for v in x.iter() {
        any |= to_bool(v)?;
    }
    Ok(Value::Bool(any))
}
fn not(x: FuncArgs) -> R {
    Ok(Value::Bool(!to_bool(a(&x, 0))?))
}

mod lists;
mod text;
use lists::*;
use text::*;

/// (name, fixed parameters, variadic, function).
const TABLE: &[(&str, usize, bool, hcl::eval::Func)] = &[
    ("absolute", 1, false, absolute),
    ("add", 2, false, add),
    ("and", 0, true, and),
    ("base64decode", 1, false, base64decode),
    ("base64encode", 1, false, base64encode),
    ("basename", 1, false, basename),
    ("ceil", 1, false, ceil),
    ("chomp", 1, false, chomp),
    ("chunklist", 2, false, chunklist),
    ("coalesce", 0, true, coalesce),
    ("coalescelist", 0, true, coalescelist),
    ("compact", 1, false, compact),
    ("concat", 0, true, concat),
    ("contains", 2, false, contains),
    ("dirname", 1, false, dirname),
    ("distinct", 1, false, distinct),
    ("divide", 2, false, divide),
    ("element", 2, false, element),
    ("equal", 2, false, equal),
    ("flatten", 1, false, flatten),
    ("floor", 1, false, floor),
    ("format", 1, true, format),
    ("formatlist", 1, true, formatlist),
    ("greaterthan", 2, false, greaterthan),
    ("greaterthanorequalto", 2, false, greaterthanorequalto),
    ("hasindex", 2, false, hasindex),
    ("homedir", 0, false, homedir),
    ("indent", 2, false, indent),
    ("index", 2, false, index),
    ("indexof", 2, false, indexof),
    ("int", 1, false, int),
    ("join", 1, true, join),
    ("jsondecode", 1, false, jsondecode),
    ("jsonencode", 1, false, jsonencode),
    ("keys", 1, false, keys),
    ("length", 1, false, length),
    ("lessthan", 2, false, lessthan),
    ("lessthanorequalto", 2, false, lessthanorequalto),
    ("lookup", 2, true, lookup),
    ("lower", 1, false, lower),
    ("max", 0, true, max),
    ("merge", 0, true, merge),
    ("min", 0, true, min),
    ("modulo", 2, false, modulo),
    ("multiply", 2, false, multiply),
    ("negate", 1, false, negate),
    ("not", 1, false, not),
    ("notequal", 2, false, notequal),
    ("or", 0, true, or),
    ("parseint", 2, false, parseint),
    ("pow", 2, false, pow),
    ("range", 0, true, range),
    ("regex", 2, false, regex),
    ("regex_replace", 3, false, regex_replace),
    ("regexall", 2, false, regexall),
    ("replace", 3, false, replace),
    ("reverse", 1, false, reverse),
    ("reverselist", 1, false, reverse),
    ("sanitize", 1, false, sanitize),
    ("sha256", 1, false, sha256),
    ("slice", 3, false, slice),
    ("sort", 1, false, sort),
    ("split", 2, false, split),
    ("strlen", 1, false, strlen),
    ("substr", 3, false, substr),
    ("subtract", 2, false, subtract),
    ("timestamp", 0, false, timestamp),
    ("title", 1, false, title),
    ("trim", 2, false, trim),
    ("trimprefix", 2, false, trimprefix),
    ("trimspace", 1, false, trimspace),
    ("trimsuffix", 2, false, trimsuffix),
    ("upper", 1, false, upper),
    ("urlencode", 1, false, urlencode),
    ("values", 1, false, values),
    ("zipmap", 2, false, zipmap),
];

/// Declare every function of the table in `ctx`.
pub fn declare(ctx: &mut Context<'_>) {
    for (name, n, variadic, f) in TABLE {
        let mut b = FuncDef::builder().params(vec![ParamType::Any; *n]);
        if *variadic {
            b = b.variadic_param(ParamType::Any);
        }
        ctx.declare_func(*name, b.build(*f));
    }
}

/// Whether `name` is a function of the table.
pub fn known(name: &str) -> bool {
    TABLE.iter().any(|(n, ..)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(src: &str) -> Result<Value, String> {
        let mut ctx = Context::new();
        declare(&mut ctx);
        ctx.declare_var("TAG", "");
        ctx.declare_var("version", "1.2.3");
        let e: hcl::Expression = hcl::edit::parser::parse_expr(src)
            .map_err(|e| e.to_string())?
            .into();
        e.evaluate(&ctx).map_err(|e| e.to_string())
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn buildx_documented_examples() {
        // A template of one interpolation is its value (HCL); args make it text.
        assert_eq!(eval(r#""${add(123, 1)}""#), Ok(num(124.0)));
        assert_eq!(eval(r#""n${add(123, 1)}""#), Ok(s("n124")));
        assert_eq!(
            eval(r#"notequal("", TAG) ? "my-image:${TAG}" : """#),
            Ok(s(""))
        );
        assert_eq!(eval(r#"replace(version, ".", "-")"#), Ok(s("1-2-3")));
        assert_eq!(eval(r#"add("1", 2)"#), Ok(num(3.0)));
        assert_eq!(eval(r#"equal(1, "1")"#), Ok(Value::Bool(true)));
    }

    #[test]
    fn strings_lists_and_maps() {
        assert_eq!(eval(r#"join(",", ["a", "b"], ["c"])"#), Ok(s("a,b,c")));
        assert_eq!(
            eval(r#"split("/", "linux/arm64")"#),
            Ok(Value::Array(vec![s("linux"), s("arm64")]))
        );
        assert_eq!(eval(r#"sanitize("linux/arm64")"#), Ok(s("linux_arm64")));
        assert_eq!(eval(r#"trimprefix("v1.2", "v")"#), Ok(s("1.2")));
        assert_eq!(eval(r#"substr("abcdef", 1, 3)"#), Ok(s("bcd")));
        assert_eq!(eval(r#"substr("abcdef", -2, -1)"#), Ok(s("ef")));
        assert_eq!(
            eval(r#"format("%s:%d-%q", "a", 2.0, "x")"#),
            Ok(s("a:2-\"x\""))
        );
        assert_eq!(
            eval(r#"formatlist("img:%s", ["a", "b"])"#),
            Ok(Value::Array(vec![s("img:a"), s("img:b")]))
        );
        assert_eq!(
            eval(r#"compact(["a", "", "b"])"#),
            Ok(Value::Array(vec![s("a"), s("b")]))
        );
        assert_eq!(
            eval(r#"regex_replace("a-b_c", "[-_]", ".")"#),
            Ok(s("a.b.c"))
        );
        assert_eq!(
            eval(r#"regex("v([0-9]+)", "v12")"#),
            Ok(Value::Array(vec![s("12")]))
        );
        assert_eq!(eval(r#"lookup({a = 1}, "b", "x")"#), Ok(s("x")));
        assert_eq!(
            eval(r#"keys({b = 1, a = 2})"#),
            Ok(Value::Array(vec![s("a"), s("b")]))
        );
        assert_eq!(eval(r#"length(merge({a = 1}, {b = 2}))"#), Ok(num(2.0)));
        assert_eq!(eval(r#"coalesce("", "x")"#), Ok(s("x")));
        assert_eq!(eval(r#"element(["a", "b"], 3)"#), Ok(s("b")));
        assert_eq!(eval(r#"basename("/a/b/")"#), Ok(s("b")));
        assert_eq!(eval(r#"dirname("a/b")"#), Ok(s("a")));
        assert_eq!(
            eval(r#"jsonencode({a = [1, true]})"#),
            Ok(s(r#"{"a":[1,true]}"#))
        );
        assert_eq!(eval(r#"parseint("ff", 16)"#), Ok(num(255.0)));
        assert_eq!(eval(r#"title("hello world")"#), Ok(s("Hello World")));
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        assert!(eval(r#"divide(1, 0)"#).is_err());
        assert!(eval(r#"element([], 1)"#).is_err());
        assert!(eval(r#"slice(["a"], 1, 3)"#).is_err());
        assert!(eval(r#"regex("(", "x")"#).is_err());
        assert!(eval(r#"add("x", 1)"#).is_err());
        assert!(eval(r#"format("%s %s", "a")"#).is_err());
        assert!(eval(r#"range(0, 1e9)"#).is_err());
        assert!(eval(r#"uuidv4()"#).is_err());
    }
}
