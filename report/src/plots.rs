//! The three plots, drawn with `plotters` as SVG: raw latency (each operation a point),
//! latency quantiles, and throughput, with fault windows shaded and labelled and failures
//! marked. The same SVG text goes into `report.html` (readable without JavaScript) and into
//! the standalone `latency-raw.svg`, `latency-quantiles.svg` and `rate.svg`.
//!
//! All three share one geometry, so their time axes line up with each other and with the
//! report's timeline: the report's script reads the plotting area's pixel range to align them.

use std::collections::HashSet;

use faultline_checker::Outcome;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::escape;
use super::load::{Fault, Run};

/// Width of every plot, in pixels.
pub const WIDTH: u32 = 1100;
const HEIGHT: u32 = 270;
const RATE_HEIGHT: u32 = 230;
const Y_LABEL_AREA: u32 = 70;
const MARGIN_LEFT: u32 = 8;
const MARGIN_RIGHT: u32 = 24;
/// Room above the plotting area for two rows of fault labels.
const MARGIN_TOP: u32 = 34;
/// Raw latency points closer than this (in pixels, per outcome) are drawn once: at the
/// plot's resolution they are the same dot, and this bounds the SVG's size whatever the
/// history's length.
const DOT_CELL: i32 = 3;

pub const OK: RGBColor = RGBColor(0x2b, 0x7b, 0xba);
pub const FAIL: RGBColor = RGBColor(0xd7, 0x30, 0x27);
pub const INFO: RGBColor = RGBColor(0xf0, 0x9a, 0x1c);

/// A moment to mark on every plot (a failure's culprit).
pub struct Mark {
    pub time_ns: u64,
    pub label: String,
}

/// The rendered plots and where their plotting area lies, in pixels from the left.
pub struct Plots {
    pub latency_raw: String,
    pub latency_quantiles: String,
    pub rate: String,
    pub area_left: i32,
    pub area_right: i32,
    /// How many points the raw latency plot drew for how many operations.
    pub dots: usize,
    pub dotted_ops: usize,
}

/// Colour of a fault's shading, by kind.
pub fn fault_color(fault: &str) -> RGBColor {
    match fault {
        // A power loss is a kill that also loses unsynced writes: a darker red.
        f if f.contains("unfsynced") => RGBColor(0x8b, 0x1a, 0x1a),
        f if f.contains("kill") || f.contains("crash") => RGBColor(0xd9, 0x48, 0x48),
        f if f.contains("pause") || f.contains("stop") => RGBColor(0x7a, 0x5c, 0xc8),
        f if f.contains("partition") || f.contains("net") || f.contains("loss") => {
            RGBColor(0xe8, 0x8a, 0x10)
        }
        f if f.contains("clock") => RGBColor(0x2a, 0x9d, 0x5c),
        _ => RGBColor(0x70, 0x70, 0x70),
    }
}

type Err = String;

fn perr<E: std::fmt::Display>(e: E) -> Err {
    format!("cannot draw a plot: {e}")
}

pub fn render(run: &Run, marks: &[Mark]) -> Result<Plots, Err> {
    let end_s = run.end_ns as f64 / 1e9;
    let x_desc = if run.synthetic_time {
        "event order (thousands of events)"
    } else {
        "time since the test started (s)"
    };
    let (latency_raw, area, dots, dotted_ops) = latency_raw(run, end_s, x_desc, marks)?;
    let latency_quantiles = latency_quantiles(run, end_s, x_desc, marks)?;
    let rate = rate(run, end_s, x_desc, marks)?;
    Ok(Plots {
        latency_raw,
        latency_quantiles,
        rate,
        area_left: area.0,
        area_right: area.1,
        dots,
        dotted_ops,
    })
}

/// Latency range (ms) for a log axis: from the smallest to the largest latency, widened to
/// whole decades so ticks are readable.
fn log_range(lat_ms: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for l in lat_ms {
        let l = l.max(1e-3);
        lo = lo.min(l);
        hi = hi.max(l);
    }
    if lo > hi {
        return (0.1, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

fn ms_label(v: &f64) -> String {
    if *v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn latency_raw(
    run: &Run,
    end_s: f64,
    x_desc: &str,
    marks: &[Mark],
) -> Result<(String, (i32, i32), usize, usize), Err> {
    let (lo, hi) = log_range(run.ops.iter().filter_map(|o| o.latency_ns()).map(ns_to_ms));
    let mut svg = String::new();
    let area;
    let mut dots = 0;
    let mut dotted_ops = 0;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let mut chart = framed(&root)
            .build_cartesian_2d(0f64..end_s, (lo..hi).log_scale())
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(if run.synthetic_time {
                "duration (events)"
            } else {
                "latency (ms)"
            })
            .y_label_formatter(&ms_label)
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(perr)?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        area = (xr.start, xr.end);
        let frame = Frame::new(xr, yr, end_s);
        draw_faults(&root, &frame, &run.faults)?;
        // One dot per occupied cell and outcome, fails and infos drawn over oks.
        for (outcome, color) in [
            (Outcome::Ok, OK),
            (Outcome::Fail, FAIL),
            (Outcome::Info, INFO),
        ] {
            let mut seen: HashSet<(i32, i32)> = HashSet::new();
            let mut pts = Vec::new();
            for o in run.ops.iter().filter(|o| o.outcome == outcome) {
                let Some(l) = o.latency_ns() else { continue };
                dotted_ops += 1;
                let p = (o.start_ns as f64 / 1e9, ns_to_ms(l).clamp(lo, hi));
                let (px, py) = chart.backend_coord(&p);
                if seen.insert((px / DOT_CELL, py / DOT_CELL)) {
                    pts.push(p);
                }
            }
            dots += pts.len();
            chart
                .draw_series(
                    pts.into_iter()
                        .map(|p| Circle::new(p, 2, color.mix(0.75).filled())),
                )
                .map_err(perr)?;
        }
        draw_marks(&root, &frame, marks)?;
        legend(&root, &[("ok", OK), ("fail", FAIL), ("info", INFO)])?;
        root.present().map_err(perr)?;
    }
    Ok((svg, area, dots, dotted_ops))
}

/// Bucket width for time series: about 150 buckets, a round number of seconds.
fn bucket_s(end_s: f64) -> f64 {
    let raw = (end_s / 150.0).max(1e-3);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn latency_quantiles(run: &Run, end_s: f64, x_desc: &str, marks: &[Mark]) -> Result<String, Err> {
    let width = bucket_s(end_s);
    let n = (end_s / width).ceil() as usize + 1;
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); n];
    for o in run.ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        if let Some(l) = o.latency_ns() {
            let b = ((o.start_ns as f64 / 1e9) / width) as usize;
            buckets[b.min(n - 1)].push(ns_to_ms(l));
        }
    }
    let qs: [(&str, f64, RGBColor); 4] = [
        ("p50", 0.5, RGBColor(0x1a, 0x98, 0x50)),
        ("p95", 0.95, RGBColor(0x2b, 0x7b, 0xba)),
        ("p99", 0.99, RGBColor(0x8e, 0x44, 0xad)),
        ("max", 1.0, RGBColor(0xd7, 0x30, 0x27)),
    ];
    // (bucket middle, value) per quantile; None where a bucket had no ok operation, so the
    // line breaks there instead of bridging an outage.
    let mut series: Vec<Vec<Option<(f64, f64)>>> = vec![Vec::new(); qs.len()];
    for (i, b) in buckets.iter_mut().enumerate() {
        b.sort_by(f64::total_cmp);
        for (qi, (_, q, _)) in qs.iter().enumerate() {
            series[qi].push(if b.is_empty() {
                None
            } else {
                let at = ((b.len() - 1) as f64 * q).round() as usize;
                Some(((i as f64 + 0.5) * width, b[at]))
            });
        }
    }
    let (lo, hi) = log_range(series.iter().flatten().filter_map(|p| p.map(|(_, v)| v)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let mut chart = framed(&root)
            .build_cartesian_2d(0f64..end_s, (lo..hi).log_scale())
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(if run.synthetic_time {
                format!("ok duration (events), per {:.0} events", width * 1e3)
            } else {
                format!("ok latency (ms), per {}", seconds(width))
            })
            .y_label_formatter(&ms_label)
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(perr)?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let frame = Frame::new(xr, yr, end_s);
        draw_faults(&root, &frame, &run.faults)?;
        for (qi, (_, _, color)) in qs.iter().enumerate() {
            for run_pts in contiguous(&series[qi]) {
                chart
                    .draw_series(LineSeries::new(run_pts, color.stroke_width(2)))
                    .map_err(perr)?;
            }
        }
        draw_marks(&root, &frame, marks)?;
        let entries: Vec<(&str, RGBColor)> = qs.iter().map(|(n, _, c)| (*n, *c)).collect();
        legend(&root, &entries)?;
        root.present().map_err(perr)?;
    }
    Ok(svg)
}

fn rate(run: &Run, end_s: f64, x_desc: &str, marks: &[Mark]) -> Result<String, Err> {
    let width = bucket_s(end_s);
    let n = (end_s / width).ceil() as usize + 1;
    let mut counts = vec![[0u32; 3]; n];
    for o in &run.ops {
        let Some(end) = o.end_ns else { continue };
        let k = match o.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            _ => 2,
        };
        let b = ((end as f64 / 1e9) / width) as usize;
        counts[b.min(n - 1)][k] += 1;
    }
    let max = counts
        .iter()
        .flat_map(|c| c.iter())
        .map(|&c| f64::from(c) / width)
        .fold(0f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, RATE_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let mut chart = framed(&root)
            .build_cartesian_2d(0f64..end_s, 0f64..max)
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(if run.synthetic_time {
                format!("operations per 1000 events, per {:.0}", width * 1e3)
            } else {
                format!("operations/s, per {}", seconds(width))
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(perr)?;
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let frame = Frame::new(xr, yr, end_s);
        draw_faults(&root, &frame, &run.faults)?;
        for (k, color) in [(0, OK), (1, FAIL), (2, INFO)] {
            let pts = counts
                .iter()
                .enumerate()
                .map(|(i, c)| ((i as f64 + 0.5) * width, f64::from(c[k]) / width));
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(perr)?;
        }
        draw_marks(&root, &frame, marks)?;
        legend(&root, &[("ok", OK), ("fail", FAIL), ("info", INFO)])?;
        root.present().map_err(perr)?;
    }
    Ok(svg)
}

fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s} s")
    } else {
        format!("{} ms", (s * 1e3).round())
    }
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Splits a series at its gaps.
fn contiguous(points: &[Option<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for p in points {
        match p {
            Some(p) => cur.push(*p),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The plotting area in pixels, and time (s) to x.
struct Frame {
    x0: i32,
    x1: i32,
    y0: i32,
    y1: i32,
    end_s: f64,
}

impl Frame {
    fn new(x: std::ops::Range<i32>, y: std::ops::Range<i32>, end_s: f64) -> Frame {
        Frame {
            x0: x.start,
            x1: x.end,
            y0: y.start,
            y1: y.end,
            end_s,
        }
    }

    fn px(&self, ns: u64) -> i32 {
        let f = (ns as f64 / 1e9 / self.end_s).clamp(0.0, 1.0);
        self.x0 + (f * f64::from(self.x1 - self.x0)).round() as i32
    }
}

type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A chart builder with the margins every plot shares: the fault bands and marks are drawn
/// by [`Frame`] from the same constants, so all plots must lay out their axes alike.
fn framed<'a, 'b, 'c>(root: &'a Root<'c>) -> ChartBuilder<'a, 'b, SVGBackend<'c>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .margin_top(MARGIN_TOP)
        .margin_bottom(4)
        .x_label_area_size(36)
        .y_label_area_size(Y_LABEL_AREA);
    builder
}

/// Shades each fault window and labels it above the plot (`#id kill n1`), on whichever of two
/// label rows has room; a fault too narrow for a label keeps just its shading (the report's
/// fault table lists them all).
fn draw_faults(root: &Root, frame: &Frame, faults: &[Fault]) -> Result<(), Err> {
    let mut row_end = [i32::MIN; 2];
    for f in faults {
        let color = fault_color(&f.fault);
        let a = frame.px(f.start_ns);
        let b = frame
            .px(f.end_ns.unwrap_or((frame.end_s * 1e9) as u64))
            .max(a + 1);
        root.draw(&Rectangle::new(
            [(a, frame.y0), (b, frame.y1)],
            color.mix(0.13).filled(),
        ))
        .map_err(perr)?;
        root.draw(&PathElement::new(
            vec![(a, frame.y0 - 4), (a, frame.y1)],
            color.mix(0.6),
        ))
        .map_err(perr)?;
        let label = match f.id {
            Some(id) => format!("#{id} {}", f.label()),
            None => f.label(),
        };
        let label = escape::short(&label, 28);
        let est = (label.chars().count() as i32) * 6 + 4;
        for (row, end) in row_end.iter_mut().enumerate() {
            if a >= *end {
                let y = 4 + row as i32 * 14;
                root.draw(&Text::new(
                    label.clone(),
                    (a + 2, y),
                    ("sans-serif", 11).into_font().color(&color),
                ))
                .map_err(perr)?;
                *end = a + est;
                break;
            }
        }
    }
    Ok(())
}

/// A dark line at each failure's culprit (dark, so it stands out from red fail dots and
/// shaded kills), labelled (`✗1`) where labels do not collide.
fn draw_marks(root: &Root, frame: &Frame, marks: &[Mark]) -> Result<(), Err> {
    let ink = RGBColor(0x20, 0x20, 0x20);
    let mut label_end = i32::MIN;
    for m in marks {
        let x = frame.px(m.time_ns);
        root.draw(&PathElement::new(
            vec![(x, frame.y0), (x, frame.y1)],
            ink.mix(0.5).stroke_width(1),
        ))
        .map_err(perr)?;
        if x > label_end {
            let label = escape::short(&m.label, 12);
            label_end = x + 7 * label.chars().count() as i32 + 4;
            root.draw(&Text::new(
                label,
                (x + 2, frame.y0 + 2),
                ("sans-serif", 11).into_font().color(&ink),
            ))
            .map_err(perr)?;
        }
    }
    Ok(())
}

/// A one-line legend at the bottom right, beside the axis title (fault labels use the top).
fn legend(root: &Root, entries: &[(&str, RGBColor)]) -> Result<(), Err> {
    let mut x = WIDTH as i32 - MARGIN_RIGHT as i32 - 60 * entries.len() as i32;
    let y = root.dim_in_pixel().1 as i32 - 14;
    for (name, color) in entries {
        root.draw(&Rectangle::new([(x, y), (x + 10, y + 8)], color.filled()))
            .map_err(perr)?;
        root.draw(&Text::new(
            name.to_string(),
            (x + 14, y - 2),
            ("sans-serif", 11).into_font(),
        ))
        .map_err(perr)?;
        x += 60;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_round() {
        assert_eq!(bucket_s(60.0), 0.5);
        assert_eq!(bucket_s(300.0), 2.0);
        assert_eq!(bucket_s(15.0), 0.1);
    }

    #[test]
    fn series_break_at_gaps() {
        let s = [Some((0.0, 1.0)), None, Some((2.0, 1.0)), Some((3.0, 1.0))];
        assert_eq!(contiguous(&s).len(), 2);
    }
}
