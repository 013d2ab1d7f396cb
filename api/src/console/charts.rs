//! Charts drawn on the server as SVG (plotters' SVG backend), embedded in the pages.
//!
//! Pure functions: data in, an SVG document out. Every chart scales to its container
//! (`viewBox`, `width="100%"`, no fixed height), names itself for assistive technology
//! (`role="img"`, `aria-labelledby` pointing at its `<title>`), and carries no `style`
//! attribute or element (the console's CSP forbids inline styles; plotters' SVG backend
//! writes presentation attributes only, and [`finish`] checks that). The pages show the
//! same figures as a table next to each chart, so a chart never is the only carrier of a
//! number. No data, or data that cannot be drawn, gives a small SVG that says so.

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;

/// Width of every chart's coordinate system; the SVG itself scales to its container.
const WIDTH: u32 = 640;
/// Height given to one bar of a horizontal bar chart, gap included.
const BAR_HEIGHT: u32 = 40;
/// Room above and below the bars (axis labels, margins).
const BAR_CHART_FRAME: u32 = 90;
/// The longest axis label drawn; longer ones are cut with an ellipsis (the table beside
/// the chart holds the full text).
const LABEL_CHARS: usize = 16;
const BAR_FILL: RGBColor = RGBColor(0x1F, 0x5F, 0xA8);
const NEGATIVE_FILL: RGBColor = RGBColor(0xA8, 0x3A, 0x1F);
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const GRID: RGBColor = RGBColor(0xCC, 0xCC, 0xCC);
/// Text size in chart units: a 640-unit chart shrinks to about 360 px on a phone, where
/// this still reads as about 11 px (plotters writes 1/1.24 of it as the font size).
const FONT: u32 = 24;

/// One bar: its category and its value (amounts in major units, counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64) -> Self {
        Bar {
            label: label.into(),
            value,
        }
    }
}

/// A point of a Pareto (80/20) curve: the top `customers` share of customers, ranked by
/// value, holds the `value` share of the total (both in 0..=1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoPoint {
    pub customers: f64,
    pub value: f64,
}

/// A horizontal bar chart, one bar per entry in the given order (stages of a funnel,
/// months of a forecast). `id` must be unique in the page; `title` names the chart;
/// `axis` describes the values (say "Weighted amount, EUR"). Non-finite values are drawn
/// as zero, negative ones to the left of the zero line.
pub fn bar_chart(id: &str, title: &str, axis: &str, bars: &[Bar]) -> String {
    if bars.is_empty() {
        return no_data(id, title);
    }
    let values: Vec<f64> = bars.iter().map(|bar| finite(bar.value)).collect();
    let (low, high) = value_range(&values);
    let height = BAR_CHART_FRAME + BAR_HEIGHT * bars.len().min(200) as u32;
    let mut svg = String::new();
    let drawn = draw_bars(&mut svg, (WIDTH, height), axis, bars, &values, (low, high));
    match drawn {
        Ok(()) => finish(id, title, &svg),
        Err(_) => cannot_draw(id, title),
    }
}

fn draw_bars(
    svg: &mut String,
    size: (u32, u32),
    axis: &str,
    bars: &[Bar],
    values: &[f64],
    (low, high): (f64, f64),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, size).into_drawing_area();
    let count = i32::try_from(bars.len().min(200))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .margin_right(24)
        .x_label_area_size(60)
        .y_label_area_size(210)
        .build_cartesian_2d(low..high, (0..count).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(INK)
        .x_labels(ticks(values, high))
        .x_label_formatter(&|value| compact(*value))
        .y_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(index) | SegmentValue::Exact(index) => {
                usize::try_from(count - 1 - *index)
                    .ok()
                    .and_then(|index| bars.get(index))
                    .map(|bar| shorten(&bar.label))
                    .unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc(axis)
        .label_style(("sans-serif", FONT).into_font().color(&INK))
        .axis_desc_style(("sans-serif", FONT).into_font().color(&INK))
        .draw()?;
    chart.draw_series(values.iter().take(200).enumerate().map(|(index, value)| {
        // The first entry on top: the axis counts from the bottom.
        let index = count - 1 - i32::try_from(index).unwrap_or(0);
        let fill = if *value < 0.0 {
            NEGATIVE_FILL
        } else {
            BAR_FILL
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(index)),
                (*value, SegmentValue::Exact(index + 1)),
            ],
            fill.filled(),
        );
        bar.set_margin(4, 4, 0, 0);
        bar
    }))?;
    root.present()?;
    Ok(())
}

/// A line chart of a Pareto curve: share of customers (x) against share of value (y),
/// both in per cent, with the line of an even spread as reference.
pub fn pareto_chart(id: &str, title: &str, curve: &[ParetoPoint]) -> String {
    if curve.len() < 2 {
        return no_data(id, title);
    }
    let mut svg = String::new();
    match draw_pareto(&mut svg, curve) {
        Ok(()) => finish(id, title, &svg),
        Err(_) => cannot_draw(id, title),
    }
}

fn draw_pareto(svg: &mut String, curve: &[ParetoPoint]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, 400)).into_drawing_area();
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .margin_right(24)
        .x_label_area_size(70)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..100.0, 0.0..100.0)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .axis_style(INK)
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&|value| format!("{value:.0} %"))
        .y_label_formatter(&|value| format!("{value:.0} %"))
        .x_desc("Share of customers, highest value first")
        .y_desc("Share of value")
        .label_style(("sans-serif", FONT).into_font().color(&INK))
        .axis_desc_style(("sans-serif", FONT).into_font().color(&INK))
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(0.0, 0.0), (100.0, 100.0)],
        GRID.stroke_width(2),
    ))?;
    let points = curve.iter().map(|point| {
        (
            finite(point.customers).clamp(0.0, 1.0) * 100.0,
            finite(point.value).clamp(0.0, 1.0) * 100.0,
        )
    });
    chart.draw_series(LineSeries::new(points, BAR_FILL.stroke_width(3)))?;
    root.present()?;
    Ok(())
}

/// An SVG that says there is nothing to draw, in the same frame as a chart.
pub fn no_data(id: &str, title: &str) -> String {
    message(id, title, "No data for this chart.")
}

fn cannot_draw(id: &str, title: &str) -> String {
    message(
        id,
        title,
        "This chart could not be drawn; the table holds its figures.",
    )
}

fn message(id: &str, title: &str, text: &str) -> String {
    let id = escape(id);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} 60\" width=\"100%\" \
         role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" class=\"chart chart-empty\">\
         <title id=\"{id}-title\">{title}</title><desc id=\"{id}-desc\">{text}</desc>\
         <text x=\"{x}\" y=\"34\" text-anchor=\"middle\" font-family=\"sans-serif\" \
         font-size=\"16\" fill=\"#222222\">{text}</text></svg>",
        title = escape(title),
        x = WIDTH / 2,
    )
}

/// Turns plotters' document into the console's: the fixed `width`/`height` of its root
/// become `width="100%"` over the same `viewBox`, and the root gains its role, its title
/// and a class. Refuses (a message SVG instead) anything carrying a `style`.
fn finish(id: &str, title: &str, svg: &str) -> String {
    let Some(rest) = svg.strip_prefix("<svg ") else {
        return cannot_draw(id, title);
    };
    let Some(end) = rest.find('>') else {
        return cannot_draw(id, title);
    };
    let (attributes, body) = rest.split_at(end);
    let body = &body[1..];
    if svg.contains("style=") || svg.contains("<style") {
        return cannot_draw(id, title);
    }
    let view_box = attributes
        .split("viewBox=\"")
        .nth(1)
        .and_then(|tail| tail.split('"').next())
        .unwrap_or("0 0 640 400");
    let id = escape(id);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{view_box}\" width=\"100%\" \
         role=\"img\" aria-labelledby=\"{id}-title\" class=\"chart\">\n\
         <title id=\"{id}-title\">{title}</title>\n{body}",
        title = escape(title),
    )
}

/// How many value ticks: one per whole number when every value is a small count (no
/// "0.5 deals"), else five.
fn ticks(values: &[f64], high: f64) -> usize {
    let counts = values.iter().all(|v| v.fract() == 0.0);
    if counts && high <= 10.0 {
        // Whole numbers from zero to the top of the axis.
        high.floor().max(1.0) as usize + 1
    } else {
        5
    }
}

/// The value axis: always holds zero, and never is empty.
fn value_range(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(0.0, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    if high - low <= f64::EPSILON || !(high - low).is_finite() {
        if low < 0.0 {
            return (low, 0.0);
        }
        return (0.0, high.max(1.0));
    }
    // A little headroom so the longest bar does not touch the frame.
    let pad = (high - low) * 0.05;
    (if low < 0.0 { low - pad } else { 0.0 }, high + pad)
}

fn finite(value: f64) -> f64 {
    if value.is_finite() {
        // Keep the span of the axis finite: beyond this no amount is real.
        value.clamp(-1e300, 1e300)
    } else {
        0.0
    }
}

/// An axis figure: 1234 → "1.2k", 3_400_000 → "3.4M".
pub fn compact(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, suffix) = if magnitude >= 1e12 {
        (value / 1e12, "T")
    } else if magnitude >= 1e9 {
        (value / 1e9, "G")
    } else if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    if magnitude >= 1e15 {
        return format!("{value:.1e}");
    }
    let text = format!("{scaled:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{suffix}")
}

fn shorten(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        return label.to_owned();
    }
    let mut cut: String = label.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: &[(&str, f64)]) -> Vec<Bar> {
        values.iter().map(|(l, v)| Bar::new(*l, *v)).collect()
    }

    /// The checks every chart must pass: one root, scalable, named, no inline style.
    fn assert_console_svg(svg: &str, id: &str) {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1, "one root: {svg}");
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("width=\"100%\""));
        assert!(svg.contains("viewBox=\"0 0 "));
        assert!(svg.contains(&format!("aria-labelledby=\"{id}-title")));
        assert!(svg.contains(&format!("<title id=\"{id}-title\">")));
        assert!(
            !svg.contains("style"),
            "no style attribute or element: {svg}"
        );
        let root = &svg[..svg.find('>').expect("root tag")];
        assert!(
            !root.contains("height="),
            "the height follows the width: {root}"
        );
        // Tags balance (a cheap well-formedness check: plotters closes what it opens).
        let opened = svg.matches("<text").count();
        assert_eq!(opened, svg.matches("</text>").count());
    }

    #[test]
    fn a_bar_chart_draws_one_bar_per_entry_with_its_label() {
        let data = bars(&[
            ("Qualify", 1200.0),
            ("Propose", 800.0),
            ("Negotiate", 300.5),
        ]);
        let svg = bar_chart("funnel", "Open amount by stage", "Amount, EUR", &data);
        assert_console_svg(&svg, "funnel");
        // No background fill: every rectangle is a bar.
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        for label in ["Qualify", "Propose", "Negotiate"] {
            assert!(
                svg.contains(&format!(">\n{label}\n</text>")),
                "{label}: {svg}"
            );
        }
        assert!(svg.contains("<title id=\"funnel-title\">Open amount by stage</title>"));
    }

    #[test]
    fn the_longest_bar_is_the_widest() {
        let data = bars(&[("a", 10.0), ("b", 100.0)]);
        let svg = bar_chart("c", "t", "x", &data);
        let widths: Vec<f64> = svg
            .split("<rect")
            .skip(1)
            .map(|rect| {
                let w = rect.split("width=\"").nth(1).expect("width");
                w.split('"').next().expect("value").parse().expect("number")
            })
            .collect();
        assert_eq!(widths.len(), 2);
        assert!(widths[1] > widths[0] * 5.0, "{widths:?}");
    }

    #[test]
    fn bars_read_from_the_top_in_the_given_order_with_whole_ticks_for_counts() {
        let data = bars(&[("first", 1.0), ("second", 2.0), ("third", 3.0)]);
        let svg = bar_chart("o", "t", "Deals", &data);
        let tops: Vec<i64> = svg
            .split("<rect")
            .skip(1)
            .map(|rect| {
                let y = rect.split(" y=\"").nth(1).expect("y");
                y.split('"').next().expect("value").parse().expect("number")
            })
            .collect();
        assert_eq!(tops.len(), 3);
        assert!(tops[0] < tops[1] && tops[1] < tops[2], "{tops:?}");
        let label_y = |label: &str| -> i64 {
            let at = svg.find(&format!(">\n{label}\n</text>")).expect("label");
            let tag = &svg[svg[..at].rfind("<text").expect("text")..at];
            let y = tag.split(" y=\"").nth(1).expect("y");
            y.split('"').next().expect("value").parse().expect("number")
        };
        assert!(label_y("first") < label_y("second"));
        assert!(label_y("second") < label_y("third"));
        assert!(!svg.contains(">\n0.5\n</text>"), "no half deals: {svg}");
    }

    #[test]
    fn empty_data_renders_a_no_data_svg() {
        let svg = bar_chart("empty", "Forecast", "Amount", &[]);
        assert_console_svg(&svg, "empty");
        assert!(svg.contains("No data"));
        assert_eq!(svg.matches("<rect").count(), 0);
        let svg = pareto_chart("p", "Pareto", &[]);
        assert_console_svg(&svg, "p");
        assert!(svg.contains("No data"));
    }

    #[test]
    fn huge_zero_negative_and_non_finite_values_are_drawn_without_panicking() {
        let cases: Vec<Vec<Bar>> = vec![
            bars(&[("zero", 0.0)]),
            bars(&[("zero", 0.0), ("also", 0.0)]),
            bars(&[("loss", -500.0)]),
            bars(&[("loss", -500.0), ("gain", 250.0)]),
            bars(&[("huge", 1e300), ("tiny", 1e-300)]),
            bars(&[("max", f64::MAX), ("min", f64::MIN)]),
            bars(&[
                ("nan", f64::NAN),
                ("inf", f64::INFINITY),
                ("-inf", f64::NEG_INFINITY),
            ]),
        ];
        for data in cases {
            let svg = bar_chart("x", "t", "axis", &data);
            assert_console_svg(&svg, "x");
            assert!(!svg.contains("NaN"), "{svg}");
        }
        let many: Vec<Bar> = (0..500)
            .map(|i| Bar::new(format!("m{i}"), f64::from(i)))
            .collect();
        let svg = bar_chart("many", "t", "axis", &many);
        assert_console_svg(&svg, "many");
    }

    #[test]
    fn labels_and_titles_are_escaped_and_long_labels_cut() {
        let data = bars(&[("<script>&\"", 1.0), ("A very long stage name indeed", 2.0)]);
        let svg = bar_chart("e\"x", "Title <b>", "a & b", &data);
        assert!(!svg.contains("<script>"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("Title &lt;b&gt;"));
        assert!(svg.contains("A very long sta…"), "{svg}");
        assert!(svg.contains("aria-labelledby=\"e&quot;x-title\""));
    }

    #[test]
    fn a_pareto_chart_draws_the_curve_and_the_even_spread() {
        let point = |customers, value| ParetoPoint { customers, value };
        let curve = [
            point(0.0, 0.0),
            point(0.25, 0.53),
            point(0.5, 0.8),
            point(0.75, f64::NAN),
            point(1.0, 1.0),
        ];
        let svg = pareto_chart("pareto", "80/20", &curve);
        assert_console_svg(&svg, "pareto");
        // The curve: one line through every point (axis ticks are polylines too, in ink).
        let curves: Vec<&str> = svg
            .split("<polyline")
            .skip(1)
            .filter(|line| line.contains("stroke=\"#1F5FA8\""))
            .collect();
        assert_eq!(curves.len(), 1, "{svg}");
        let points = curves[0].split("points=\"").nth(1).expect("points");
        let points = points.split('"').next().expect("end");
        assert_eq!(points.split_whitespace().count(), curve.len(), "{points}");
        // The even spread, from (0, 0) to (100 %, 100 %), in grey.
        assert!(
            svg.contains("stroke=\"#CCCCCC\" stroke-width=\"2\""),
            "{svg}"
        );
        assert!(svg.contains("Share of customers"));
        assert!(svg.contains("100 %"));
    }

    #[test]
    fn axis_figures_are_compact() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(999.0), "999");
        assert_eq!(compact(1234.0), "1.2k");
        assert_eq!(compact(-3_400_000.0), "-3.4M");
        assert_eq!(compact(2e9), "2G");
        assert_eq!(compact(1e300), "1.0e300");
    }
}
