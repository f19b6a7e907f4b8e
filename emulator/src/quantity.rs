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

/// A Kubernetes quantity as an exact number of billionths (`1Gi`, `250m`,
/// `1e3`, `-5`), following the apiserver's grammar: a signed decimal number
/// and one suffix — binary (`Ki` … `Ei`), decimal (`n` `u` `m` `k` `M` `G`
/// `T` `P` `E`) or an exponent (`e3`, `E-2`). `None` when it is not one, or
/// beyond what 128 bits of billionths hold.
pub fn nanos(quantity: &str) -> Option<i128> {
    let (sign, rest) = match quantity.as_bytes().first()? {
        b'+' => (1, &quantity[1..]),
        b'-' => (-1, &quantity[1..]),
        _ => (1, quantity),
    };
    let digits_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(digits_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    // (multiplier, power of ten) the number is scaled by, in billionths.
    let (multiplier, power): (i128, i32) = match suffix {
        "Ki" => (1 << 10, 9),
        "Mi" => (1 << 20, 9),
        "Gi" => (1 << 30, 9),
        "Ti" => (1 << 40, 9),
        "Pi" => (1 << 50, 9),
        "Ei" => (1 << 60, 9),
        "n" => (1, 0),
        "u" => (1, 3),
        "m" => (1, 6),
        "" => (1, 9),
        "k" => (1, 12),
        "M" => (1, 15),
        "G" => (1, 18),
        "T" => (1, 21),
        "P" => (1, 24),
        "E" => (1, 27),
        exponent if exponent.starts_with(['e', 'E']) => {
            let digits = &exponent[1..];
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (1, 9 + digits.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    // whole.fraction × 10^power × multiplier, in integers: the fraction's
    // digits lower the power.
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
    }
    let power = power - fraction.len() as i32;
    let scaled = if power >= 0 {
        mantissa.checked_mul(10i128.checked_pow(power as u32)?)?
    } else {
        // Below a billionth: rounded up, as the apiserver does.
        let divisor = 10i128.checked_pow(power.unsigned_abs()).unwrap_or(i128::MAX);
        (mantissa + divisor - 1) / divisor
    };
    Some(sign * scaled.checked_mul(multiplier)?)
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

    #[test]
    fn exact_quantities_follow_the_apiserver_grammar() {
        assert_eq!(nanos("64Mi"), Some((64i128 << 20) * 1_000_000_000));
        assert_eq!(nanos("250m"), Some(250_000_000));
        assert_eq!(nanos("1.5"), Some(1_500_000_000));
        assert_eq!(nanos(".5k"), Some(500_000_000_000));
        assert_eq!(nanos("1e3"), Some(1_000_000_000_000));
        assert_eq!(nanos("1E-3"), Some(1_000_000));
        assert_eq!(nanos("-3"), Some(-3_000_000_000));
        assert_eq!(nanos("0"), Some(0));
        assert!(nanos("10Gi") > nanos("4Gi"));
        for bad in [
            "", "Mi", "ten", "1.2.3", "1 Gi", "1GB", "1e", "inf", "NaN", "1e3.5", "--1",
        ] {
            assert_eq!(nanos(bad), None, "{bad}");
        }
    }
}
