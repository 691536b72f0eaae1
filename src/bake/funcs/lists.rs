//! List, map and collection functions, and `timestamp`/`homedir`.

use super::*;
pub(super) fn length(x: FuncArgs) -> R {
    let n = match a(&x, 0) {
        Value::Array(l) => l.len(),
        Value::Object(o) => o.len(),
        Value::String(s) => s.chars().count(),
        other => return Err(format!("length of a {}", kind(other))),
    };
    Ok(Value::Number(Number::from(n as u64)))
}
pub(super) fn concat(x: FuncArgs) -> R {
    let mut out = vec![];
    for l in x.iter() {
        out.extend(to_list(l)?);
    }
    Ok(Value::Array(out))
}
pub(super) fn contains(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    Ok(Value::Bool(l.iter().any(|v| same(v, a(&x, 1)))))
}
pub(super) fn compact(x: FuncArgs) -> R {
    let mut out = vec![];
    for v in to_list(a(&x, 0))? {
        if !matches!(&v, Value::Null) && !to_str(&v)?.is_empty() {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}
pub(super) fn distinct(x: FuncArgs) -> R {
    let mut out: Vec<Value> = vec![];
    for v in to_list(a(&x, 0))? {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}
pub(super) fn flat(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.into_iter().for_each(|e| flat(e, out)),
        other => out.push(other),
    }
}
pub(super) fn flatten(x: FuncArgs) -> R {
    let mut out = vec![];
    for v in to_list(a(&x, 0))? {
        flat(v, &mut out);
    }
    Ok(Value::Array(out))
}
pub(super) fn element(x: FuncArgs) -> R {
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
pub(super) fn index(x: FuncArgs) -> R {
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
pub(super) fn indexof(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    l.iter()
        .position(|v| same(v, a(&x, 1)))
        .map(|i| Value::Number(Number::from(i as u64)))
        .ok_or_else(|| "indexof: the value is not in the list".into())
}
pub(super) fn hasindex(x: FuncArgs) -> R {
    Ok(Value::Bool(index(x).is_ok()))
}
pub(super) fn keys(x: FuncArgs) -> R {
    let mut k: Vec<String> = to_map(a(&x, 0))?.keys().cloned().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::String).collect()))
}
pub(super) fn values(x: FuncArgs) -> R {
    let m = to_map(a(&x, 0))?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| m[k].clone()).collect()))
}
pub(super) fn lookup(x: FuncArgs) -> R {
    let m = to_map(a(&x, 0))?;
    let k = to_str(a(&x, 1))?;
    match (m.get(&k), x.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(format!("lookup: no key {k:?}")),
    }
}
pub(super) fn merge(x: FuncArgs) -> R {
    let mut out = Map::new();
    for m in x.iter() {
        if matches!(m, Value::Null) {
            continue;
        }
        out.extend(to_map(m)?);
    }
    Ok(Value::Object(out))
}
pub(super) fn coalesce(x: FuncArgs) -> R {
    x.iter()
        .find(|v| !matches!(v, Value::Null) && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
        .ok_or_else(|| "coalesce: no non-null, non-empty argument".into())
}
pub(super) fn coalescelist(x: FuncArgs) -> R {
    x.iter()
        .find(|v| matches!(v, Value::Array(a) if !a.is_empty()))
        .cloned()
        .ok_or_else(|| "coalescelist: no non-empty list".into())
}
pub(super) fn reverse(x: FuncArgs) -> R {
    match a(&x, 0) {
        Value::String(s) => Ok(Value::String(s.chars().rev().collect())),
        v => {
            let mut l = to_list(v)?;
            l.reverse();
            Ok(Value::Array(l))
        }
    }
}
pub(super) fn slice(x: FuncArgs) -> R {
    let l = to_list(a(&x, 0))?;
    let (s, e) = (to_f64(a(&x, 1))? as usize, to_f64(a(&x, 2))? as usize);
    if s > e || e > l.len() {
        return Err(format!("slice [{s}:{e}] of a list of {}", l.len()));
    }
    Ok(Value::Array(l[s..e].to_vec()))
}
pub(super) fn sort(x: FuncArgs) -> R {
    let mut l: Vec<String> = to_list(a(&x, 0))?
        .iter()
        .map(to_str)
        .collect::<Result<_, _>>()?;
    l.sort();
    Ok(Value::Array(l.into_iter().map(Value::String).collect()))
}
pub(super) fn range(x: FuncArgs) -> R {
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
pub(super) fn zipmap(x: FuncArgs) -> R {
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
pub(super) fn chunklist(x: FuncArgs) -> R {
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
pub(super) fn timestamp(_: FuncArgs) -> R {
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
pub(super) fn homedir(_: FuncArgs) -> R {
    std::env::var("HOME")
        .map(Value::String)
        .map_err(|_| "homedir: HOME is not set".into())
}
