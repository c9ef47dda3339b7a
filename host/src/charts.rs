//! SVG charts for the pages Handoff renders (the dashboard, the simulation
//! report): drawn with plotters into a string, no script.

use plotters::prelude::*;

/// A line chart of weekly values, one line per series, as SVG.
pub fn line_chart(title: &str, weeks: &[String], series: &[(&str, RGBColor, Vec<Option<f64>>)], max: f64) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 240)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let n = i32::try_from(weeks.len()).unwrap_or(1).max(1);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(0..(n - 1).max(1), 0f64..max.max(1.0));
        let Ok(mut chart) = chart else { return svg_error() };
        let labels = weeks.to_vec();
        let _ = chart
            .configure_mesh()
            .x_labels(weeks.len())
            .x_label_formatter(&|i| labels.get(usize::try_from(*i).unwrap_or(0)).cloned().unwrap_or_default())
            .light_line_style(WHITE.mix(0.0))
            .draw();
        for (name, color, values) in series {
            let points: Vec<(i32, f64)> =
                values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i32::try_from(i).unwrap_or(0), v))).collect();
            let color = *color;
            if let Ok(drawn) = chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))) {
                drawn
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            let _ = chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())));
        }
        let _ = chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK.mix(0.2)).draw();
        let _ = root.present();
    }
    svg
}

/// A bar chart of counts by name, as SVG.
pub fn bar_chart(title: &str, bars: &[(String, u64)]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 240)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let top = bars.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
        let n = u32::try_from(bars.len()).unwrap_or(1).max(1);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(36)
            .build_cartesian_2d((0u32..n).into_segmented(), 0u64..top + 1);
        let Ok(mut chart) = chart else { return svg_error() };
        let names: Vec<String> = bars.iter().map(|(name, _)| name.chars().take(22).collect()).collect();
        let _ = chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw();
        let _ = chart.draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(11, 87, 208).filled())
                .margin(12)
                .data(bars.iter().enumerate().map(|(i, (_, count))| (u32::try_from(i).unwrap_or(0), *count))),
        );
        let _ = root.present();
    }
    svg
}

fn svg_error() -> String {
    r#"<svg xmlns="http://www.w3.org/2000/svg" width="560" height="40"><text x="8" y="24">chart unavailable</text></svg>"#.into()
}

/// Bars in pairs by name (before and after, say), as SVG: `series` names
/// the two, `bars` holds each name's two counts.
pub fn paired_bar_chart(title: &str, series: [&str; 2], bars: &[(String, [u64; 2])]) -> String {
    let mut svg = String::new();
    {
        let width = u32::try_from(bars.len()).unwrap_or(0).saturating_mul(70).clamp(560, 1600);
        let root = SVGBackend::with_string(&mut svg, (width, 280)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let top = bars.iter().flat_map(|(_, n)| *n).max().unwrap_or(1).max(1);
        let n = u32::try_from(bars.len()).unwrap_or(1).max(1);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(36)
            .build_cartesian_2d(0f64..f64::from(n), 0u64..top + top / 10 + 1);
        let Ok(mut chart) = chart else { return svg_error() };
        let names: Vec<String> = bars.iter().map(|(name, _)| name.chars().take(16).collect()).collect();
        let _ = chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len() * 2 + 1)
            .x_label_formatter(&|v| {
                let at = v - v.floor();
                if (at - 0.5).abs() < 0.01 {
                    names.get(v.floor() as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .draw();
        let colors = [RGBColor(154, 160, 172), RGBColor(11, 87, 208)];
        for (side, color) in colors.iter().enumerate() {
            let offset = if side == 0 { 0.12 } else { 0.5 };
            let color = *color;
            let drawn = chart.draw_series(bars.iter().enumerate().map(|(i, (_, counts))| {
                let x = f64::from(u32::try_from(i).unwrap_or(0)) + offset;
                Rectangle::new([(x, 0), (x + 0.38, counts[side])], color.filled())
            }));
            if let Ok(drawn) = drawn {
                drawn
                    .label(series[side])
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            }
        }
        let _ = chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK.mix(0.2)).draw();
        let _ = root.present();
    }
    svg
}
