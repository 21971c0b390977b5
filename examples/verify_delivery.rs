//! Verifies the sample Skyvern delivery shipped in `examples/deliveries/`, then shows that a
//! re-serialized copy of the same body and a forged signature are both rejected.
//!
//! Run with: `cargo run -p runhook-examples --example verify_delivery`

use runhook::verify::Delivery;
use runhook::{Secret, SkyvernSignature, Verifier};

/// The demo key the sample was signed with; a real receiver reads its key from the environment.
const DEMO_API_KEY: &str = "sk_demo_runhook_example";
const SIGNATURE: &str = "46f300ffbe79f6e6ab4dbc641147aae588484fd18e2d36f9c55ce7504e89d388";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deliveries/skyvern-completed.json"
    ))?;
    let scheme = SkyvernSignature::new(Secret::new(DEMO_API_KEY)?);

    let headers = [("x-skyvern-signature", SIGNATURE)];
    let verified = scheme.verify(&Delivery::new(&headers, &body))?;
    let key = verified.key_index.unwrap_or_default();
    println!("genuine delivery: scheme {}, key #{key}", verified.scheme);

    // The classic mistake: a proxy or framework re-serializes the JSON (here with a space after
    // each comma) before the check. Same data, other bytes.
    let reserialized = std::str::from_utf8(&body)?.replace(",\"", ", \"");
    match scheme.verify(&Delivery::new(&headers, reserialized.as_bytes())) {
        Ok(_) => return Err("a re-serialized body must not verify".into()),
        Err(err) => println!("re-serialized body: rejected ({err})"),
    }

    let forged = [("x-skyvern-signature", "0".repeat(64))];
    match scheme.verify(&Delivery::new(&forged, &body)) {
        Ok(_) => return Err("a forged signature must not verify".into()),
        Err(err) => println!(
            "forged signature: rejected ({err}), answer {}",
            err.status()
        ),
    }
    Ok(())
}
