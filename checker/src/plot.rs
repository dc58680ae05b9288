//! The report's plots, drawn with plotters into SVG strings. Every time plot shades the nemesis
//! intervals and labels them by fault. Colours are the Okabe-Ito palette (distinguishable with
//! the common colour-vision deficiencies); outcomes also differ by marker shape per function.
//!
//! A plot that fails to draw becomes a small SVG saying why: a report is never lost to a plot.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::availability::NemesisInterval;
use crate::history::Outcome;
use crate::perf::{OpPoint, Perf, outcome_index};

/// Okabe-Ito: blue, vermillion, orange, bluish green, reddish purple, sky blue, yellow, black.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0xF0, 0xE4, 0x42),
    RGBColor(0x00, 0x00, 0x00),
];

/// Colour of an outcome: ok blue, fail vermillion, info orange.
pub fn outcome_color(o: Outcome) -> RGBColor {
    PALETTE[outcome_index(o)]
}

fn fault_color(kind: &str) -> RGBColor {
    match kind {
        "partition" => PALETTE[5],
        "kill" => PALETTE[1],
        "pause" => PALETTE[4],
        "clock" => PALETTE[6],
        "loss" => PALETTE[3],
        _ => RGBColor(0x99, 0x99, 0x99),
    }
}

const W: u32 = 960;
const H: u32 = 320;
const FONT: &str = "sans-serif";

type Res = Result<(), Box<dyn std::error::Error>>;
type QuantileLine = (
    &'static str,
    fn(&crate::perf::QuantileWindow) -> f64,
    RGBColor,
);
/// A named series of `(x, y)` points, `None` where there is a gap.
pub type Series = (String, Vec<Option<(f64, f64)>>);

fn render(
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Res,
) -> String {
    let mut s = String::new();
    let r = {
        let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.into())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.into()))
    };
    match r {
        Ok(()) => s,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"40\"><text x=\"10\" y=\"25\">plot failed: {}</text></svg>",
            crate::report::escape(&e.to_string())
        ),
    }
}

/// Shaded rectangles and labels for the faults, spanning `y0..y1` in data coordinates.
fn shade<DB: DrawingBackend, CT: plotters::coord::CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, DB, CT>,
    faults: &[NemesisInterval],
    end: f64,
    y0: f64,
    y1: f64,
) -> Res
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(faults.iter().map(|f| {
            let stop = f.stop_s.unwrap_or(end);
            Rectangle::new(
                [(f.start_s, y0), (stop, y1)],
                fault_color(&f.kind).mix(0.22).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(faults.iter().map(|f| {
            Text::new(
                f.label.clone(),
                (f.start_s, y1),
                (FONT, 13).into_font().color(&BLACK),
            )
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn end_of(perf: &Perf) -> f64 {
    perf.seconds.max(1) as f64
}

/// Keeps at most `max` points: every fail and info, and an evenly strided sample of the ok ones.
pub fn sample_points(points: &[OpPoint], max: usize) -> Vec<&OpPoint> {
    if points.len() <= max {
        return points.iter().collect();
    }
    let rare = points.iter().filter(|p| p.outcome != Outcome::Ok).count();
    let oks = points.len() - rare;
    let keep = max.saturating_sub(rare).max(1);
    let stride = oks.div_ceil(keep).max(1);
    let mut i = 0usize;
    points
        .iter()
        .filter(|p| {
            if p.outcome != Outcome::Ok {
                return true;
            }
            i += 1;
            (i - 1).is_multiple_of(stride)
        })
        .collect()
}

/// Latency of every completed op over time, log scale; colour by outcome, shape by function.
/// At most `max_points` are drawn (see [`sample_points`]); the title says when sampled.
pub fn latency_scatter(perf: &Perf, max_points: usize) -> String {
    let pts = sample_points(&perf.points, max_points);
    let end = end_of(perf);
    let lo = pts
        .iter()
        .map(|p| p.latency_ms)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.01, 1.0)
        * 0.8;
    let hi = pts.iter().map(|p| p.latency_ms).fold(1.0, f64::max) * 2.0;
    let fs: Vec<String> = perf.throughput.keys().cloned().collect();
    let title = if pts.len() < perf.points.len() {
        format!(
            "Latency of every operation (ok sampled: {} of {} shown)",
            pts.len(),
            perf.points.len()
        )
    } else {
        format!("Latency of every operation ({})", pts.len())
    };
    render(W, H + 40, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_desc("time since start (s)")
            .y_desc("latency (ms, log)")
            .draw()?;
        shade(&mut chart, &perf.nemesis, end, lo, hi)?;
        let mut groups: BTreeMap<(usize, usize), Vec<(f64, f64)>> = BTreeMap::new();
        for p in &pts {
            let fi = fs.iter().position(|f| *f == p.f).unwrap_or(0);
            groups
                .entry((fi, outcome_index(p.outcome)))
                .or_default()
                .push((p.end_s, p.latency_ms.max(lo)));
        }
        for ((fi, oi), v) in groups {
            let color = PALETTE[oi];
            let style = color.mix(0.75).filled();
            let label = format!(
                "{} {}",
                fs.get(fi).map_or("?", |s| s.as_str()),
                ["ok", "fail", "info"][oi]
            );
            let series =
                match fi % 4 {
                    0 => chart.draw_series(v.iter().map(|&c| Circle::new(c, 2, style)))?,
                    1 => chart.draw_series(v.iter().map(|&c| TriangleMarker::new(c, 3, style)))?,
                    2 => chart
                        .draw_series(v.iter().map(|&c| Cross::new(c, 3, color.stroke_width(1))))?,
                    _ => chart.draw_series(v.iter().map(|&c| {
                        EmptyElement::at(c) + Rectangle::new([(-2, -2), (2, 2)], style)
                    }))?,
                };
            series.label(label).legend(move |(x, y)| match fi % 4 {
                0 => Circle::new((x + 8, y), 3, style).into_dyn(),
                1 => TriangleMarker::new((x + 8, y), 4, style).into_dyn(),
                2 => Cross::new((x + 8, y), 4, color.stroke_width(1)).into_dyn(),
                _ => Rectangle::new([(x + 5, y - 3), (x + 11, y + 3)], style).into_dyn(),
            });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Latency quantiles (p50, p95, p99, max) per 1 s window, log scale.
pub fn latency_quantiles(perf: &Perf) -> String {
    let end = end_of(perf);
    let w = &perf.latency_windows;
    let lo = w
        .iter()
        .map(|q| q.p50)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.01, 1.0)
        * 0.8;
    let hi = w.iter().map(|q| q.max).fold(1.0, f64::max) * 2.0;
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency quantiles per second (all outcomes)", (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_desc("time since start (s)")
            .y_desc("latency (ms, log)")
            .draw()?;
        shade(&mut chart, &perf.nemesis, end, lo, hi)?;
        let lines: [QuantileLine; 4] = [
            ("p50", |q| q.p50, PALETTE[0]),
            ("p95", |q| q.p95, PALETTE[3]),
            ("p99", |q| q.p99, PALETTE[2]),
            ("max", |q| q.max, PALETTE[1]),
        ];
        for (name, get, color) in lines {
            chart
                .draw_series(LineSeries::new(
                    w.iter().map(|q| (q.t + 0.5, get(q).max(lo))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Completions per second by function and outcome.
pub fn throughput(perf: &Perf) -> String {
    let end = end_of(perf);
    let hi = perf
        .throughput
        .values()
        .flat_map(|v| v.iter().flat_map(|c| c.iter()))
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.2;
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Throughput per second by function and outcome", (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end, 0f64..hi)?;
        chart
            .configure_mesh()
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_desc("time since start (s)")
            .y_desc("completions per second")
            .draw()?;
        shade(&mut chart, &perf.nemesis, end, 0.0, hi)?;
        let mut n = 0usize;
        for (f, v) in &perf.throughput {
            for (oi, name) in ["ok", "fail", "info"].iter().enumerate() {
                if v.iter().all(|c| c[oi] == 0) {
                    continue;
                }
                let color = PALETTE[n % PALETTE.len()];
                n += 1;
                let dashed = oi > 0;
                let data: Vec<(f64, f64)> = v
                    .iter()
                    .enumerate()
                    .map(|(s, c)| (s as f64 + 0.5, f64::from(c[oi])))
                    .collect();
                let s = if dashed {
                    chart.draw_series(DashedLineSeries::new(data, 6, 4, color.stroke_width(2)))?
                } else {
                    chart.draw_series(LineSeries::new(data, color.stroke_width(2)))?
                };
                s.label(format!("{f} {name}")).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            }
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Availability per second (`available / completed`, see
/// [`crate::availability::is_unavailable`]), in percent.
pub fn availability(perf: &Perf) -> String {
    overlay(
        "Availability per second (definite answers / completed)",
        "available (%)",
        &[(
            "availability".to_string(),
            perf.availability
                .iter()
                .enumerate()
                .map(|(s, a)| a.map(|a| (s as f64 + 0.5, a * 100.0)))
                .collect(),
        )],
        &perf.nemesis,
        end_of(perf),
        Some(105.0),
    )
}

/// Several runs' per-second series on one chart (gaps where a value is `None`), with one run's
/// faults shaded. `y_max` fixes the y range (else it fits the data).
pub fn overlay(
    title: &str,
    y_desc: &str,
    series: &[Series],
    faults: &[NemesisInterval],
    end: f64,
    y_max: Option<f64>,
) -> String {
    let hi = y_max.unwrap_or_else(|| {
        series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().map(|p| p.1))
            .fold(1.0, f64::max)
            * 1.2
    });
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end.max(1.0), 0f64..hi)?;
        chart
            .configure_mesh()
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_desc("time since start (s)")
            .y_desc(y_desc)
            .draw()?;
        shade(&mut chart, faults, end, 0.0, hi)?;
        for (i, (name, v)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let mut first = true;
            for run in v.split(Option::is_none) {
                let data: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
                if data.is_empty() {
                    continue;
                }
                let s = chart.draw_series(LineSeries::new(data, color.stroke_width(2)))?;
                if first {
                    s.label(name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Which node led, per term, from `status.jsonl`; grey where a node did not answer its poll.
pub fn leader_timeline(perf: &Perf, nodes: &[String]) -> String {
    let end = end_of(perf).max(perf.leaders.iter().map(|l| l.end_s).fold(0.0, f64::max));
    let mut names: Vec<String> = nodes.to_vec();
    for node in perf
        .leaders
        .iter()
        .map(|l| &l.node)
        .chain(perf.members.iter().map(|m| &m.node))
    {
        if !names.contains(node) {
            names.push(node.clone());
        }
    }
    // n2 before n10.
    names.sort_by_key(|n| (n.len(), n.clone()));
    let n = names.len().max(1) as f64;
    let h = 90 + 36 * names.len().max(1) as u32;
    render(W, h, |root| {
        let labels = names.clone();
        let mut chart = ChartBuilder::on(root)
            .caption(
                if perf.members.is_empty() {
                    "Leader timeline (polled once a second; grey: no answer)"
                } else {
                    "Leader timeline (polled once a second; grey: no answer; line: a member)"
                },
                (FONT, 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end, 0f64..n + 1.0)?;
        chart
            .configure_mesh()
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .x_desc("time since start (s)")
            .y_desc("node")
            .y_labels(names.len() + 2)
            .y_label_formatter(&|y| {
                // Node i sits on row i + 1 (rows are whole numbers, so the ticks land on them).
                let i = y.round();
                if (*y - i).abs() < 0.01 && i >= 1.0 {
                    labels.get(i as usize - 1).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw()?;
        shade(&mut chart, &perf.nemesis, end, 0.0, n + 1.0)?;
        // The member set over time: a line under each node's row while it is a member.
        for m in &perf.members {
            let row = names.iter().position(|x| *x == m.node).unwrap_or(0) as f64 + 1.0;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(m.start_s, row - 0.42), (m.end_s, row - 0.36)],
                BLACK.filled(),
            )))?;
        }
        for l in &perf.leaders {
            let row = names.iter().position(|x| *x == l.node).unwrap_or(0) as f64 + 1.0;
            let color = match l.term {
                Some(t) => PALETTE[(t as usize) % 6],
                None => RGBColor(0xBB, 0xBB, 0xBB),
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(l.start_s, row - 0.3), (l.end_s, row + 0.3)],
                color.filled(),
            )))?;
            if let Some(t) = l.term {
                chart.draw_series(std::iter::once(Text::new(
                    format!("term {t}"),
                    (l.start_s + 0.1, row - 0.05),
                    (FONT, 13).into_font().color(&BLACK),
                )))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::tests::history;

    #[rustfmt::skip]
    fn perf() -> Perf {
        let h = history(&[
            (0, "read",  "ok",   100,  110),
            (1, "write", "fail", 200,  500),
            (0, "read",  "ok",   900, 1100),
            (2, "cas",   "info", 950, 2950),
        ]);
        let mut p = Perf::new(&h, &[]);
        p.nemesis.push(NemesisInterval {
            kind: "partition".into(), label: "partition halves".into(), start_s: 1.0, stop_s: Some(2.0), heal: true,
        });
        p
    }

    #[test]
    fn every_plot_is_an_svg_with_title_axes_and_fault_label() {
        let mut p = perf();
        p.leaders.push(crate::availability::LeaderSegment {
            node: "n2".into(),
            term: Some(3),
            start_s: 0.0,
            end_s: 2.0,
        });
        let leaders = leader_timeline(&p, &["n1".into(), "n2".into()]);
        assert!(
            leaders.contains("\nn1\n</text>") && leaders.contains("\nn2\n</text>"),
            "node names on the y axis: {leaders}"
        );
        assert!(leaders.contains("term 3"));
        for (svg, title) in [
            (latency_scatter(&p, 1000), "Latency of every operation"),
            (latency_quantiles(&p), "Latency quantiles"),
            (throughput(&p), "Throughput per second"),
            (availability(&p), "Availability per second"),
            (
                leader_timeline(&p, &["n1".into(), "n2".into()]),
                "Leader timeline",
            ),
        ] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(!svg.contains("plot failed"), "{svg}");
            assert!(svg.contains(title), "{title} missing");
            assert!(svg.contains("time since start (s)"));
            assert!(
                svg.contains("partition halves"),
                "fault label missing in {title}"
            );
        }
    }

    #[test]
    fn sampling_keeps_every_failure_and_caps_the_count() {
        let mut pts = perf().points;
        let ok = pts[0].clone();
        pts.extend(std::iter::repeat_n(ok, 1000));
        let s = sample_points(&pts, 100);
        assert!(s.len() <= 100, "{}", s.len());
        assert_eq!(s.iter().filter(|p| p.outcome != Outcome::Ok).count(), 2);
    }
}
