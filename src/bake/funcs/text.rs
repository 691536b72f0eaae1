//! String, encoding, path, regex, `format` and JSON functions.

use super::*;
pub(super) fn lower(x: FuncArgs) -> R {
    s1(x, str::to_lowercase)
}
pub(super) fn upper(x: FuncArgs) -> R {
    s1(x, str::to_uppercase)
}
pub(super) fn title(x: FuncArgs) -> R {
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
pub(super) fn trimspace(x: FuncArgs) -> R {
    s1(x, |s| s.trim().to_string())
}
pub(super) fn chomp(x: FuncArgs) -> R {
    s1(x, |s| s.trim_end_matches(['\n', '\r']).to_string())
}
pub(super) fn strlen(x: FuncArgs) -> R {
    Ok(Value::Number(Number::from(
        to_str(a(&x, 0))?.chars().count() as u64,
    )))
}
pub(super) fn base64encode(x: FuncArgs) -> R {
    use base64::Engine;
    s1(x, |s| base64::engine::general_purpose::STANDARD.encode(s))
}
pub(super) fn base64decode(x: FuncArgs) -> R {
    use base64::Engine;
    let s = to_str(a(&x, 0))?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("base64decode: {e}"))?;
    String::from_utf8(b)
        .map(Value::String)
        .map_err(|_| "base64decode: the result is not UTF-8".into())
}
pub(super) fn sha256(x: FuncArgs) -> R {
    s1(x, |s| hex::encode(sha2::Sha256::digest(s.as_bytes())))
}
pub(super) fn urlencode(x: FuncArgs) -> R {
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
pub(super) fn basename(x: FuncArgs) -> R {
    s1(x, |s| {
        let t = s.trim_end_matches('/');
        match t.rsplit_once('/') {
            Some((_, b)) => b.to_string(),
            None if t.is_empty() && !s.is_empty() => "/".into(),
            None => t.to_string(),
        }
    })
}
pub(super) fn dirname(x: FuncArgs) -> R {
    s1(x, |s| match s.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((d, _)) => d.to_string(),
        None => ".".into(),
    })
}
/// buildx's `sanitize`: every character but letters, digits and `_` → `_`.
pub(super) fn sanitize(x: FuncArgs) -> R {
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
pub(super) fn trim(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let cut: Vec<char> = to_str(a(&x, 1))?.chars().collect();
    Ok(Value::String(s.trim_matches(cut.as_slice()).to_string()))
}
pub(super) fn trimprefix(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let p = to_str(a(&x, 1))?;
    Ok(Value::String(s.strip_prefix(&p).unwrap_or(&s).to_string()))
}
pub(super) fn trimsuffix(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let p = to_str(a(&x, 1))?;
    Ok(Value::String(s.strip_suffix(&p).unwrap_or(&s).to_string()))
}
pub(super) fn replace(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    Ok(Value::String(
        s.replace(&to_str(a(&x, 1))?, &to_str(a(&x, 2))?),
    ))
}
pub(super) fn indent(x: FuncArgs) -> R {
    let n = to_f64(a(&x, 0))? as usize;
    let s = to_str(a(&x, 1))?;
    Ok(Value::String(
        s.replace('\n', &format!("\n{}", " ".repeat(n))),
    ))
}
pub(super) fn substr(x: FuncArgs) -> R {
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
pub(super) fn split(x: FuncArgs) -> R {
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
pub(super) fn join(x: FuncArgs) -> R {
    let sep = to_str(a(&x, 0))?;
    let mut parts = vec![];
    for l in rest(&x, 1) {
        for v in to_list(&l)? {
            parts.push(to_str(&v)?);
        }
    }
    Ok(Value::String(parts.join(&sep)))
}
pub(super) fn regex_of(p: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(p).map_err(|e| format!("invalid regular expression {p:?}: {e}"))
}
pub(super) fn regex_replace(x: FuncArgs) -> R {
    let s = to_str(a(&x, 0))?;
    let re = regex_of(&to_str(a(&x, 1))?)?;
    let rep = to_str(a(&x, 2))?;
    Ok(Value::String(re.replace_all(&s, rep.as_str()).into_owned()))
}
/// go-cty's `regex`: the match, the capture groups as a list, or the named
/// groups as an object.
pub(super) fn regex(x: FuncArgs) -> R {
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
pub(super) fn regexall(x: FuncArgs) -> R {
    let re = regex_of(&to_str(a(&x, 0))?)?;
    let s = to_str(a(&x, 1))?;
    Ok(Value::Array(
        re.find_iter(&s)
            .map(|m| Value::String(m.as_str().into()))
            .collect(),
    ))
}
/// `format` with Go's common verbs: `%s %d %v %q %f %t %%`, and `%#v`.
pub(super) fn format_with(spec: &str, args: &[Value]) -> Result<String, String> {
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
pub(super) fn format(x: FuncArgs) -> R {
    Ok(Value::String(format_with(
        &to_str(a(&x, 0))?,
        &rest(&x, 1),
    )?))
}
/// `formatlist`: `format` per element; list arguments go element-wise,
/// others repeat.
pub(super) fn formatlist(x: FuncArgs) -> R {
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

pub(super) fn json_text(v: &Value) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}
pub(super) fn jsonencode(x: FuncArgs) -> R {
    Ok(Value::String(json_text(a(&x, 0))?))
}
pub(super) fn jsondecode(x: FuncArgs) -> R {
    serde_json::from_str(&to_str(a(&x, 0))?).map_err(|e| format!("jsondecode: {e}"))
}
