//! Untrusted text in messages, cut to a size a log can hold: a 1 MB
//! `.dockerignore` pattern, Dockerfile word or registry message is shown by its
//! start and end, with how much was left out.

/// The longest input a message quotes whole.
pub const MAX: usize = 240;
/// The longest whole message (one that may quote inputs) shown whole.
pub const MAX_MESSAGE: usize = 1024;

/// `s` if it is at most [`MAX`] bytes; else its start and end around a note of
/// how many bytes were cut (on character boundaries).
pub fn clip(s: &str) -> String {
    clip_to(s, MAX)
}

/// [`clip`] with a limit of `max` bytes.
pub fn clip_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let head = floor(s, max * 2 / 3);
    let tail_start = ceil(s, s.len() - max / 3);
    format!(
        "{}…[{} bytes cut]…{}",
        &s[..head],
        tail_start - head,
        &s[tail_start..]
    )
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_on_character_boundaries() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(500_000);
        let c = clip(&long);
        assert!(c.len() < MAX + 40, "{}", c.len());
        assert!(c.contains("bytes cut]"), "{c}");
        assert!(c.starts_with('é') && c.ends_with('é'));
        let exact = "x".repeat(MAX);
        assert_eq!(clip(&exact), exact);
    }
}
