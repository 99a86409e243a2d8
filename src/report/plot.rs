//! Line charts of metrics per iteration, one line per series, as PNG bytes.
//!
//! plotters draws into an RGB buffer (bitmap backend, text with the embedded
//! DejaVu Sans Mono through ab_glyph, so no system fonts are needed) and
//! [`super::png`] encodes it. The same series give the same bytes.

use std::sync::Once;

use plotters::prelude::*;

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (720, 420);
const FONT: &[u8] = include_bytes!("DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";
const GRID: RGBColor = RGBColor(238, 238, 238);
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One line: its legend label and `(iteration, value)` points.
pub struct Series {
    pub label: String,
    pub points: Vec<(i32, f64)>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a constant of the binary; a failure is caught by the tests.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

/// A PNG chart of `series` over iterations, y in `[0, y_max]`.
pub fn line_chart(
    title: &str,
    y_label: &str,
    y_max: f64,
    series: &[Series],
) -> anyhow::Result<Vec<u8>> {
    register_font();
    let (w, h) = SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((i32::MAX, i32::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let (lo, hi) = if lo > hi {
            (0, 1)
        } else {
            (lo, hi.max(lo + 1))
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(f64::from(lo) - 0.2..f64::from(hi) + 0.2, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc(y_label)
            .x_labels((hi - lo + 1) as usize * 2 + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round())
                } else {
                    String::new()
                }
            })
            .label_style((FAMILY, 14))
            .light_line_style(GRID)
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|(x, y)| (f64::from(*x), *y)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    super::png::encode_rgb(&buf, w, h)
}
