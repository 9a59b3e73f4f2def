#include "nncompress/report/html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "nncompress/report/model_report.h"

namespace nnc::html {
namespace {

constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                    "#76b7b2", "#edc948", "#b07aa1", "#9c755f"};
const char* seriesColor(size_t i) { return kPalette[i % std::size(kPalette)]; }

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string coordinate(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string valueText(double v, bool human) { return human ? humanCount(v) : number(v); }

// 1, 2 or 5 times a power of ten, so that about `count` ticks cover [0, max].
double niceStep(double span, int count) {
  if (!(span > 0)) return 1;
  const double raw = span / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * power) return m * power;
  return 10 * power;
}

std::string legend(const std::vector<std::string>& names, double x, double y) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    const double lx = x + 150.0 * static_cast<double>(i);
    out += "<rect x=\"" + coordinate(lx) + "\" y=\"" + coordinate(y - 9) +
           "\" width=\"10\" height=\"10\" fill=\"" + seriesColor(i) + "\"/>";
    out += "<text x=\"" + coordinate(lx + 14) + "\" y=\"" + coordinate(y) + "\">" +
           escape(names[i]) + "</text>";
  }
  return out;
}

}  // namespace

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string barChart(const std::vector<std::string>& labels, const std::vector<BarSeries>& series,
                     const ChartOptions& options) {
  constexpr double kLabelWidth = 220, kPlotWidth = 480, kBarHeight = 11, kRowGap = 7;
  constexpr double kTop = 44, kValueWidth = 90;
  const size_t per_row = std::max<size_t>(series.size(), 1);
  const double row_height = per_row * kBarHeight + kRowGap;
  const double height = kTop + row_height * labels.size() + 10;
  const double width = kLabelWidth + kPlotWidth + kValueWidth;
  double max_value = 0;
  for (const BarSeries& s : series)
    for (double v : s.values)
      if (std::isfinite(v)) max_value = std::max(max_value, v);
  if (max_value <= 0) max_value = 1;

  std::string svg = "<svg class=\"chart bar-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                    coordinate(width) + "\" height=\"" + coordinate(height) + "\" viewBox=\"0 0 " +
                    coordinate(width) + " " + coordinate(height) + "\" role=\"img\">";
  svg += "<title>" + escape(options.title) + "</title>";
  svg += "<text class=\"chart-title\" x=\"0\" y=\"16\">" + escape(options.title) + "</text>";
  std::vector<std::string> names;
  for (const BarSeries& s : series) names.push_back(s.name);
  if (names.size() > 1 || !options.value_label.empty())
    svg += legend(names.size() > 1 ? names : std::vector<std::string>{options.value_label},
                  kLabelWidth, 34);
  for (size_t row = 0; row < labels.size(); ++row) {
    const double y0 = kTop + row_height * static_cast<double>(row);
    svg += "<text class=\"bar-label\" x=\"" + coordinate(kLabelWidth - 6) + "\" y=\"" +
           coordinate(y0 + per_row * kBarHeight / 2 + 4) + "\" text-anchor=\"end\">" +
           escape(labels[row].size() > 34 ? "..." + labels[row].substr(labels[row].size() - 31)
                                          : labels[row]) +
           "</text>";
    for (size_t s = 0; s < series.size(); ++s) {
      const double v = row < series[s].values.size() ? series[s].values[row] : 0;
      const double w = std::isfinite(v) && v > 0 ? kPlotWidth * v / max_value : 0;
      const double y = y0 + kBarHeight * static_cast<double>(s);
      svg += "<rect class=\"bar\" x=\"" + coordinate(kLabelWidth) + "\" y=\"" + coordinate(y) +
             "\" width=\"" + coordinate(std::max(w, 0.5)) + "\" height=\"" +
             coordinate(kBarHeight - 1) + "\" fill=\"" + seriesColor(s) + "\"><title>" +
             escape(labels[row] + " " + series[s].name + ": " + number(v)) + "</title></rect>";
      svg += "<text class=\"bar-value\" x=\"" + coordinate(kLabelWidth + w + 4) + "\" y=\"" +
             coordinate(y + kBarHeight - 2) + "\">" + escape(valueText(v, options.human_values)) +
             "</text>";
    }
  }
  svg += "</svg>";
  return svg;
}

std::string lineChart(const std::vector<LineSeries>& series, const LineChartOptions& options) {
  constexpr double kWidth = 720, kHeight = 340, kLeft = 70, kRight = 20, kTop = 44, kBottom = 50;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto xOf = [&](double x) { return options.log_x ? std::log10(std::max(x, 1e-300)) : x; };
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  for (const LineSeries& s : series)
    for (const LinePoint& p : s.points) {
      if (!std::isfinite(p.x) || !std::isfinite(p.y) || (options.log_x && p.x <= 0)) continue;
      x_min = std::min(x_min, xOf(p.x));
      x_max = std::max(x_max, xOf(p.x));
      y_min = std::min(y_min, p.y);
      y_max = std::max(y_max, p.y);
    }
  if (!std::isfinite(x_min)) x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  if (x_max - x_min < 1e-12) x_min -= 0.5, x_max += 0.5;
  if (y_max - y_min < 1e-12) y_min -= 0.5, y_max += 0.5;
  const double y_step = niceStep(y_max - y_min, 5);
  y_min = std::floor(y_min / y_step) * y_step;
  y_max = std::ceil(y_max / y_step) * y_step;
  auto px = [&](double x) { return kLeft + plot_w * (xOf(x) - x_min) / (x_max - x_min); };
  auto py = [&](double y) { return kTop + plot_h * (1 - (y - y_min) / (y_max - y_min)); };

  std::string svg =
      "<svg class=\"chart line-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" "
      "height=\"340\" viewBox=\"0 0 720 340\" role=\"img\"><title>" +
      escape(options.title) + "</title>";
  svg += "<text class=\"chart-title\" x=\"0\" y=\"16\">" + escape(options.title) + "</text>";
  std::vector<std::string> names;
  for (const LineSeries& s : series) names.push_back(s.name);
  svg += legend(names, kLeft, 34);
  // Axes, horizontal grid lines with labels, x ticks.
  for (double y = y_min; y <= y_max + y_step / 2; y += y_step) {
    svg += "<line class=\"grid\" x1=\"" + coordinate(kLeft) + "\" x2=\"" +
           coordinate(kLeft + plot_w) + "\" y1=\"" + coordinate(py(y)) + "\" y2=\"" +
           coordinate(py(y)) + "\"/>";
    svg += "<text class=\"tick\" x=\"" + coordinate(kLeft - 6) + "\" y=\"" + coordinate(py(y) + 4) +
           "\" text-anchor=\"end\">" + escape(number(y)) + "</text>";
  }
  const double x_step = options.log_x ? 1 : niceStep(x_max - x_min, 6);
  for (double x = std::ceil(x_min / x_step) * x_step; x <= x_max + 1e-9; x += x_step) {
    const double shown = options.log_x ? std::pow(10.0, x) : x;
    const double X = kLeft + plot_w * (x - x_min) / (x_max - x_min);
    svg += "<text class=\"tick\" x=\"" + coordinate(X) + "\" y=\"" +
           coordinate(kTop + plot_h + 16) + "\" text-anchor=\"middle\">" +
           escape(humanCount(shown)) + "</text>";
  }
  svg += "<line class=\"axis\" x1=\"" + coordinate(kLeft) + "\" x2=\"" + coordinate(kLeft) +
         "\" y1=\"" + coordinate(kTop) + "\" y2=\"" + coordinate(kTop + plot_h) + "\"/>";
  svg += "<line class=\"axis\" x1=\"" + coordinate(kLeft) + "\" x2=\"" +
         coordinate(kLeft + plot_w) + "\" y1=\"" + coordinate(kTop + plot_h) + "\" y2=\"" +
         coordinate(kTop + plot_h) + "\"/>";
  svg += "<text class=\"axis-label\" x=\"" + coordinate(kLeft + plot_w / 2) + "\" y=\"" +
         coordinate(kHeight - 8) + "\" text-anchor=\"middle\">" + escape(options.x_label) +
         "</text>";
  svg += "<text class=\"axis-label\" transform=\"translate(14," + coordinate(kTop + plot_h / 2) +
         ") rotate(-90)\" text-anchor=\"middle\">" + escape(options.y_label) + "</text>";
  for (size_t s = 0; s < series.size(); ++s) {
    std::string path;
    for (const LinePoint& p : series[s].points) {
      if (!std::isfinite(p.x) || !std::isfinite(p.y) || (options.log_x && p.x <= 0)) continue;
      path += (path.empty() ? "M" : " L") + coordinate(px(p.x)) + "," + coordinate(py(p.y));
    }
    svg += "<path class=\"line\" d=\"" + path + "\" fill=\"none\" stroke=\"" + seriesColor(s) +
           "\" stroke-width=\"2\"/>";
    for (const LinePoint& p : series[s].points) {
      if (!std::isfinite(p.x) || !std::isfinite(p.y) || (options.log_x && p.x <= 0)) continue;
      svg += "<circle class=\"point\" cx=\"" + coordinate(px(p.x)) + "\" cy=\"" +
             coordinate(py(p.y)) + "\" r=\"4\" fill=\"" + seriesColor(s) + "\"><title>" +
             escape((p.label.empty() ? series[s].name : p.label) + ": " + number(p.x) + ", " +
                    number(p.y)) +
             "</title></circle>";
    }
  }
  svg += "</svg>";
  return svg;
}

std::string table(const Table& t) {
  auto isNumeric = [&](size_t c) { return c < t.numeric.size() && t.numeric[c]; };
  std::string out = "<table class=\"sortable\"><thead><tr>";
  for (size_t c = 0; c < t.headers.size(); ++c)
    out += std::string("<th") + (isNumeric(c) ? " class=\"num\" data-numeric=\"1\"" : "") + ">" +
           escape(t.headers[c]) + "</th>";
  out += "</tr></thead><tbody>";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (size_t c = 0; c < row.size(); ++c)
      out += std::string("<td") + (isNumeric(c) ? " class=\"num\"" : "") + ">" + escape(row[c]) +
             "</td>";
    out += "</tr>";
  }
  out += "</tbody></table>";
  return out;
}

std::string summaryTable(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string out = "<table class=\"summary\"><tbody>";
  for (const auto& [key, value] : rows)
    out += "<tr><th>" + escape(key) + "</th><td>" + escape(value) + "</td></tr>";
  out += "</tbody></table>";
  return out;
}

void HtmlPage::addSection(const std::string& heading, std::string body) {
  body_ += "<section><h2>" + escape(heading) + "</h2>" + body + "</section>\n";
}

void HtmlPage::addParagraph(const std::string& text) { body_ += "<p>" + escape(text) + "</p>\n"; }

std::string HtmlPage::render() const {
  // Sorting by header click; errors are recorded on <body> so a headless browser test can tell
  // that the script ran cleanly.
  static constexpr const char* kScript = R"JS(
(function () {
  var body = document.body;
  window.addEventListener('error', function (e) {
    body.setAttribute('data-report-errors', (body.getAttribute('data-report-errors') || '') +
                      String(e.message) + ';');
  });
  function cellValue(row, index, numeric) {
    var text = row.cells[index] ? row.cells[index].textContent.trim() : '';
    if (!numeric) return text.toLowerCase();
    var m = text.match(/^[-+]?[0-9.]+(e[-+]?[0-9]+)?/i);
    if (!m) return -Infinity;
    var scale = {K: 1e3, M: 1e6, G: 1e9, T: 1e12};
    var unit = text.slice(m[0].length).trim().charAt(0);
    return parseFloat(m[0]) * (scale[unit] || 1);
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.addEventListener('click', function () {
        var numeric = th.getAttribute('data-numeric') === '1';
        var ascending = th.getAttribute('data-sorted') !== 'asc';
        var rows = Array.prototype.slice.call(table.tBodies[0].rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
        });
        rows.forEach(function (r) { table.tBodies[0].appendChild(r); });
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) {
          c.removeAttribute('data-sorted');
        });
        th.setAttribute('data-sorted', ascending ? 'asc' : 'desc');
      });
    });
  });
  // '#selftest': sort the first numeric column and check the order (used by the browser test).
  if (window.location.hash === '#selftest') {
    var th = document.querySelector('table.sortable th[data-numeric="1"]');
    var result = 'no-numeric-column';
    if (th) {
      th.click();
      var table = th.closest('table'), index = th.cellIndex, ok = true;
      var rows = table.tBodies[0].rows;
      for (var i = 1; i < rows.length; ++i)
        if (cellValue(rows[i - 1], index, true) > cellValue(rows[i], index, true)) ok = false;
      result = ok ? 'sorted' : 'unsorted';
    }
    body.setAttribute('data-report-selftest', result);
  }
  body.setAttribute('data-report-ready', '1');
})();
)JS";
  static constexpr const char* kStyle = R"CSS(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; background: #f6f6f6; }
table.sortable th[data-sorted=asc]::after { content: " \25B2"; }
table.sortable th[data-sorted=desc]::after { content: " \25BC"; }
table.summary th { background: none; font-weight: 600; }
svg.chart { display: block; margin: 1em 0; font-size: 11px; }
svg .chart-title { font-size: 13px; font-weight: 600; }
svg .grid { stroke: #e5e5e5; } svg .axis { stroke: #555; }
.note { color: #666; font-size: 0.9em; }
)CSS";
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
         escape(title_) + "</title><style>" + kStyle + "</style></head>\n<body><h1>" +
         escape(title_) + "</h1>\n" + body_ + "<script>" + kScript + "</script>\n</body></html>\n";
}

}  // namespace nnc::html
