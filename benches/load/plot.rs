//! The herds' token requests over time, drawn as a PNG.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use plotters::prelude::*;
use plotters::style::FontStyle;

/// Where the harness finds a font for the plot's text (Debian's
/// fonts-dejavu-core, which Chromium pulls in).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One series: its label and requests per `bucket_ms`, bucket by bucket
/// from `start_s` (seconds against the moment `notify_before` ahead of the
/// shared `exp`).
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) start_s: f64,
    pub(crate) counts: Vec<usize>,
}

/// `"<what> off"` for a window of 0 s, `"<what> <window> s"` otherwise.
pub(crate) fn window_label(what: &str, window_s: u64) -> String {
    if window_s == 0 {
        format!("{what} off")
    } else {
        format!("{what} {window_s} s")
    }
}

/// Draws the series over one time axis, to `LOAD_PLOT` or
/// `target/<name>-<unix time>.png`; says why when it cannot.
pub(crate) fn renewal_rate(name: &str, title: &str, bucket_ms: u64, series: &[Series]) {
    let path = std::env::var("LOAD_PLOT").unwrap_or_else(|_| {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        format!("target/{name}-{stamp}.png")
    });
    let path = Path::new(&path);
    match draw(path, title, bucket_ms, series) {
        Ok(()) => println!("\nplot written: {}", path.display()),
        Err(error) => println!("\nno plot ({error})"),
    }
}

fn draw(
    path: &Path,
    title: &str,
    bucket_ms: u64,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let font: &'static [u8] = Box::leak(
        std::fs::read(FONT)
            .map_err(|e| format!("{FONT}: {e}; apt-get install fonts-dejavu-core"))?
            .into_boxed_slice(),
    );
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| format!("{FONT} is not a usable font"))?;
    let per_second = 1000.0 / bucket_ms as f64;
    let bucket_s = bucket_ms as f64 / 1000.0;
    let from = series.iter().map(|s| s.start_s).fold(0.0, f64::min);
    let to = series
        .iter()
        .map(|s| s.start_s + s.counts.len() as f64 * bucket_s)
        .fold(0.0, f64::max);
    let peak = series
        .iter()
        .flat_map(|s| s.counts.iter())
        .copied()
        .max()
        .unwrap_or(1) as f64
        * per_second;

    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(from..to, 0.0..peak * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds, against exp - notify_before")
        .y_desc("token requests per second")
        .y_label_formatter(&|rate| format!("{rate:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    for (index, one) in series.iter().enumerate() {
        // Red, blue, dark green, purple, orange: apart from each other on
        // white.
        let color = [
            RGBColor(214, 39, 40),
            RGBColor(31, 119, 180),
            RGBColor(44, 140, 44),
            RGBColor(148, 103, 189),
            RGBColor(255, 127, 14),
        ][index % 5]
            .to_rgba();
        let points = one.counts.iter().enumerate().map(|(bucket, count)| {
            (
                one.start_s + bucket as f64 * bucket_s,
                *count as f64 * per_second,
            )
        });
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(one.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}
