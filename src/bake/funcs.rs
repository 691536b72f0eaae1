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

fn lower(x: FuncArgs) -> R {
    s1(x, str::to_lowercase)
}
fn upper(x: FuncArgs) -> R {
    s1(x, str::to_uppercase)
}
fn title(x: FuncArgs) -> R {
    s1(x, |s| {
        let mut out = String::with_capacity(s.len());
        let mut start = true;
        for c in s.chars() {
            if start && c.is_alphabetic() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            start = c.is_whitespace();
        }
        out
    })
}
fn trimspace(x: FuncArgs) -> R {
    s1(x, |s| s.trim().to_string())
}
fn chomp(x: FuncArgs) -> R {
    s1(x, |s| s.trim_end_matches(['\n', '\r']).to_string())
}
fn strlen(x: FuncArgs) -> R {
    Ok(Value::Number(Number::from(
        to_str(a(&x, 0))?.chars().count() as u64,
    )))
}
fn base64encode(x: FuncArgs) -> R {
    use base64::Engine;
    s1(x, |s| base64::engine::general_purpose::STANDARD.encode(s))
}
fn base64decode(x: FuncArgs) -> R {
    use base64::Engine;
    let s = to_str(a(&x, 0))?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("base64decode: {e}"))?;
    String::from_utf8(b)
        .map(Value::String)
        .map_err(|_| "base64decode: the result is not UTF-8".into())
}
fn sha256(x: FuncArgs) -> R {
    s1(x, |s| hex::encode(sha2::Sha256::digest(s.as_bytes())))
}
fn urlencode(x: FuncArgs) -> R {
    s1(x, |s| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    })
}
fn basename(x: FuncArgs) -> R {
    s1(x, |s| {
        let t = s.trim_end_matches('/');
        match t.rsplit_once('/') {
            Some((_, b)) => b.to_string(),
            None if t.is_empty() && !s.is_empty() => "/".into(),
            None => t.to_string(),
        }
    })
}
fn dirname(x: FuncArgs) -> R {
    s1(x, |s| match s.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((d, _)) => d.to_string(),
        None => ".".into(),
    })
}
/// buildx's `sanitize`: every character but letters, digits and `_` → `_`.
fn sanitize(x: FuncArgs) -> R {
    s1(x, |s| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    })
}
fn trim(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let cut: Vec<char> = to_str(a(&x, 1))?.chars().collect();
    Ok(Value::String(s.trim_matches(cut.as_slice()).to_string()))
}
fn trimprefix(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let p = to_str(a(&x, 1))?;
    Ok(Value::String(s.strip_prefix(&p).unwrap_or(&s).to_string()))
}
fn trimsuffix(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let p = to_str(a(&x, 1))?;
    Ok(Value::String(s.strip_suffix(&p).unwrap_or(&s).to_string()))
}
fn replace(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    Ok(Value::String(
        s.replace(&to_str(a(&x, 1))?, &to_str(a(&x, 2))?),
    ))
}
fn indent(x: FuncArgs) -> R {
    let n = to_f64(a(&x, 0))? as usize;
    let s = to_str(a(&x, 1))?;
    Ok(Value::String(
        s.replace('\n', &format!("\n{}", " ".repeat(n))),
    ))
}
fn substr(x: FuncArgs) -> R {
    let s: Vec<char> = to_str(a(&x, 0))?.chars().collect();
    let len = s.len() as i64;
    let mut off = to_f64(a(&x, 1))? as i64;
    let n = to_f64(a(&x, 2))? as i64;
    if off < 0 {
        off += len;
    }
    let off = off.clamp(0, len) as usize;
    let end = if n < 0 {
        s.len()
    } else {
        (off + n as usize).min(s.len())
    };
    Ok(Value::String(s[off..end].iter().collect()))
}
fn split(x: FuncArgs) -> R {
    let sep = to_str(a(&x, 0))?;
    let s = to_str(a(&x, 1))?;
    if s.is_empty() {
        return Ok(Value::Array(vec![Value::String(String::new())]));
    }
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.into()))
            .collect(),
    ))
}
fn join(x: FuncArgs) -> R {
    let sep = to_str(a(&x, 0))?;
    let mut parts = vec![];
    for l in rest(&x, 1) {
        for v in to_list(&l)? {
            parts.push(to_str(&v)?);
        }
    }
    Ok(Value::String(parts.join(&sep)))
}
fn regex_of(p: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(p).map_err(|e| format!("invalid regular expression {p:?}: {e}"))
}
fn regex_replace(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let re = regex_of(&to_str(a(&x, 1))?)?;
    let rep = to_str(a(&x, 2))?;
    Ok(Value::String(re.replace_all(&s, rep.as_str()).into_owned()))
}
/// go-cty's `regex`: the match, the capture groups as a list, or the named
/// groups as an object.
fn regex(x: FuncArgs) -> R {
    let re = regex_of(&to_str(a(&x, 0))?)?;
    let s = to_str(a(&x, 1))?;
    let c = re
        .captures(&s)
        .ok_or_else(|| "regex: the pattern does not match".to_string())?;
    let text = |m: Option<regex::Match<'_>>| Value::String(m.map_or("", |m| m.as_str()).into());
    if re.captures_len() == 1 {
        return Ok(text(c.get(0)));
    }
    let named: Vec<&str> = re.capture_names().flatten().collect();
    if !named.is_empty() {
        return Ok(Value::Object(
            named
                .iter()
                .map(|n| (n.to_string(), text(c.name(n))))
                .collect(),
        ));
    }
    Ok(Value::Array((1..c.len()).map(|i| text(c.get(i))).collect()))
}
fn regexall(x: FuncArgs) -> R {
    let re = regex_of(&to_str(a(&x, 0))?)?;
    let s = to_str(a(&x, 1))?;
    Ok(Value::Array(
        re.find_iter(&s)
            .map(|m| Value::String(m.as_str().into()))
            .collect(),
    ))
}
/// `format` with Go's common verbs: `%s %d %v %q %f %t %%`, and `%#v`.
fn format_with(spec: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = spec.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = it.peek() {
            if f.is_ascii_digit() || f == '.' || f == '#' || f == '-' || f == '+' {
                flags.push(f);
                it.next();
            } else {
                break;
            }
        }
        let verb = it.next().ok_or("format: a lone % at the end")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = next
            .next()
            .ok_or_else(|| format!("format: too few arguments for {spec:?}"))?;
        match verb {
            's' | 'v' if flags.is_empty() => out.push_str(&match v {
                Value::Array(_) | Value::Object(_) => json_text(v)?,
                _ => to_str(v)?,
            }),
            'd' => out.push_str(&format!("{}", to_f64(v)?.trunc() as i64)),
            'q' => out.push_str(&serde_json::to_string(&to_str(v)?).map_err(|e| e.to_string())?),
            't' => out.push_str(&to_bool(v)?.to_string()),
            'f' => {
                let prec = flags
                    .split_once('.')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(6);
                out.push_str(&format!("{:.*}", prec, to_f64(v)?));
            }
            'v' if flags == "#" => out.push_str(&json_text(v)?),
            other => return Err(format!("format: the verb %{flags}{other} is not supported")),
        }
    }
    Ok(out)
}
fn format(x: FuncArgs) -> R {
    Ok(Value::String(format_with(
        &to_str(a(&x, 0))?,
        &rest(&x, 1),
    )?))
}
/// `formatlist`: `format` per element; list arguments go element-wise,
/// others repeat.
fn formatlist(x: FuncArgs) -> R {
    let spec = to_str(a(&x, 0))?;
    let args = rest(&x, 1);
    let n = args
        .iter()
        .filter_map(|v| match v {
            Value::Array(a) => Some(a.len()),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let mut out = vec![];
    for i in 0..n {
        let row: Vec<Value> = args
            .iter()
            .map(|v| match v {
                Value::Array(a) => a.get(i).cloned().unwrap_or(Value::Null),
                other => other.clone(),
            })
            .collect();
        out.push(Value::String(format_with(&spec, &row)?));
    }
    Ok(Value::Array(out))
}

fn json_text(v: &Value) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}
fn jsonencode(x: FuncArgs) -> R {
    Ok(Value::String(json_text(a(&x, 0))?))
}
fn jsondecode(x: FuncArgs) -> R {
    serde_json::from_str(&to_str(a(&x, 0))?).map_err(|e| format!("jsondecode: {e}"))
}

fn length(x: FuncArgs) -> R {
    let n = match a(&x, 0) {
        Value::Array(l) => l.len(),
        Value::Object(o) => o.len(),
        Value::String(s) => s.chars().count(),
        other => return Err(format!("length of a {}", kind(other))),
    };
    Ok(Value::Number(Number::from(n as u64)))
}
fn concat(x: FuncArgs) -> R {
    let mut out = vec![];
    for l in x.iter() {
        out.extend(to_list(l)?);
    }
    Ok(Value::Array(out))
}
fn contains(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    Ok(Value::Bool(l.iter().any(|v| same(v, a(&x, 1)))))
}
fn compact(x: FuncArgs) -> R {
    let mut out = vec![];
    for v in to_list(a(&x, 0))? {
        if !matches!(&v, Value::Null) && !to_str(&v)?.is_empty() {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}
fn distinct(x: FuncArgs) -> R {
    let mut out: Vec<Value> = vec![];
    for v in to_list(a(&x, 0))? {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}
fn flat(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.into_iter().for_each(|e| flat(e, out)),
        other => out.push(other),
    }
}
fn flatten(x: FuncArgs) -> R {
    let mut out = vec![];
    for v in to_list(a(&x, 0))? {
        flat(v, &mut out);
    }
    Ok(Value::Array(out))
}
fn element(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    if l.is_empty() {
        return Err("element of an empty list".into());
    }
    let i = to_f64(a(&x, 1))?;
    if i < 0.0 {
        return Err("element: a negative index".into());
    }
    Ok(l[i as usize % l.len()].clone())
}
fn index(x: FuncArgs) -> R {
    match a(&x, 0) {
        Value::Array(l) => {
            let i = to_f64(a(&x, 1))?;
            l.get(i as usize)
                .filter(|_| i >= 0.0)
                .cloned()
                .ok_or_else(|| format!("index {i} is out of range"))
        }
        Value::Object(o) => {
            let k = to_str(a(&x, 1))?;
            o.get(&k).cloned().ok_or_else(|| format!("no key {k:?}"))
        }
        other => Err(format!("index of a {}", kind(other))),
    }
}
fn indexof(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    l.iter()
        .position(|v| same(v, a(&x, 1)))
        .map(|i| Value::Number(Number::from(i as u64)))
        .ok_or_else(|| "indexof: the value is not in the list".into())
}
fn hasindex(x: FuncArgs) -> R {
    Ok(Value::Bool(index(x).is_ok()))
}
fn keys(x: FuncArgs) -> R {
    let mut k: Vec<String> = to_map(a(&x, 0))?.keys().cloned().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::String).collect()))
}
fn values(x: FuncArgs) -> R {
    let m = to_map(a(&x, 0))?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| m[k].clone()).collect()))
}
fn lookup(x: FuncArgs) -> R {
    let m = to_map(a(&x, 0))?;
    let k = to_str(a(&x, 1))?;
    match (m.get(&k), x.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(format!("lookup: no key {k:?}")),
    }
}
fn merge(x: FuncArgs) -> R {
    let mut out = Map::new();
    for m in x.iter() {
        if matches!(m, Value::Null) {
            continue;
        }
        out.extend(to_map(m)?);
    }
    Ok(Value::Object(out))
}
fn coalesce(x: FuncArgs) -> R {
    x.iter()
        .find(|v| !matches!(v, Value::Null) && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
        .ok_or_else(|| "coalesce: no non-null, non-empty argument".into())
}
fn coalescelist(x: FuncArgs) -> R {
    x.iter()
        .find(|v| matches!(v, Value::Array(a) if !a.is_empty()))
        .cloned()
        .ok_or_else(|| "coalescelist: no non-empty list".into())
}
fn reverse(x: FuncArgs) -> R {
    match a(&x, 0) {
        Value::String(s) => Ok(Value::String(s.chars().rev().collect())),
        v => {
            let mut l = to_list(v)?;
            l.reverse();
            Ok(Value::Array(l))
        }
    }
}
fn slice(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    let (s, e) = (to_f64(a(&x, 1))? as usize, to_f64(a(&x, 2))? as usize);
    if s > e || e > l.len() {
        return Err(format!("slice [{s}:{e}] of a list of {}", l.len()));
    }
    Ok(Value::Array(l[s..e].to_vec()))
}
fn sort(x: FuncArgs) -> R {
    let mut l: Vec<String> = to_list(a(&x, 0))?
        .iter()
        .map(to_str)
        .collect::<Result<_, _>>()?;
    l.sort();
    Ok(Value::Array(l.into_iter().map(Value::String).collect()))
}
fn range(x: FuncArgs) -> R {
    let v: Vec<f64> = x.iter().map(to_f64).collect::<Result<_, _>>()?;
    let (start, end, step) = match v.as_slice() {
        [e] => (0.0, *e, 1.0),
        [s, e] => (*s, *e, if s <= e { 1.0 } else { -1.0 }),
        [s, e, st] => (*s, *e, *st),
        _ => return Err("range takes one to three numbers".into()),
    };
    if step == 0.0 {
        return Err("range: a step of zero".into());
    }
    let mut out = vec![];
    let mut i = start;
    while (step > 0.0 && i < end) || (step < 0.0 && i > end) {
        out.push(num(i));
        if out.len() > 1024 {
            return Err("range: more than 1024 elements".into());
        }
        i += step;
    }
    Ok(Value::Array(out))
}
fn zipmap(x: FuncArgs) -> R {
    let k = to_list(a(&x, 0))?;
    let v = to_list(a(&x, 1))?;
    if k.len() != v.len() {
        return Err("zipmap: the lists differ in length".into());
    }
    let mut m = Map::new();
    for (k, v) in k.iter().zip(v) {
        m.insert(to_str(k)?, v);
    }
    Ok(Value::Object(m))
}
fn chunklist(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    let n = to_f64(a(&x, 1))? as usize;
    if n == 0 {
        return Ok(Value::Array(vec![Value::Array(l)]));
    }
    Ok(Value::Array(
        l.chunks(n).map(|c| Value::Array(c.to_vec())).collect(),
    ))
}
/// The time the evaluation started, as `timestamp()` returns it (RFC 3339,
/// UTC), fixed by `SOURCE_DATE_EPOCH` as buildx does.
fn timestamp(_: FuncArgs) -> R {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Ok(Value::String(
        humantime::format_rfc3339_seconds(t).to_string(),
    ))
}
fn homedir(_: FuncArgs) -> R {
    std::env::var("HOME")
        .map(Value::String)
        .map_err(|_| "homedir: HOME is not set".into())
}

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
