//! Kubernetes quantities as the sandbox needs them: bytes and nano-CPUs.

/// `512Mi`, `1Gi`, `256M`, `1e3`, `1048576` → bytes.
pub fn bytes(quantity: &str) -> Option<i64> {
    let q = quantity.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("m", 1e-3),
        ("E", 1e18),
        ("P", 1e15),
        ("", 1.0),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = q.strip_suffix(suffix)
            && let Ok(value) = number.parse::<f64>()
        {
            return (value >= 0.0).then(|| (value * factor).round() as i64);
        }
    }
    None
}

/// `500m`, `1`, `1.5` → billionths of a CPU.
pub fn nano_cpus(quantity: &str) -> Option<i64> {
    let q = quantity.trim();
    let cpus = match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => q.parse::<f64>().ok()?,
    };
    (cpus > 0.0).then(|| (cpus * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        // The App defaults shared with the operator parse (the health check relies on it).
        assert_eq!(bytes(winky_crds::defaults::APP_MEMORY), Some(256 << 20));
        assert_eq!(nano_cpus(winky_crds::defaults::APP_CPU), Some(250_000_000));
        assert_eq!(bytes("512Mi"), Some(512 << 20));
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("64M"), Some(64_000_000));
        assert_eq!(bytes("1048576"), Some(1 << 20));
        assert_eq!(bytes("lots"), None);
        assert_eq!(nano_cpus("500m"), Some(500_000_000));
        assert_eq!(nano_cpus("2"), Some(2_000_000_000));
        assert_eq!(nano_cpus("0"), None);
    }
}
