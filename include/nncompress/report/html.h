#pragma once
// Building blocks for self-contained HTML reports (`--report out.html`): no network, no external
// scripts or fonts, charts as inline SVG. One HtmlPage collects sections; charts and tables are
// plain functions returning markup, so every report (report, prune, quantize, compress) is made
// of the same parts and looks the same.

#include <string>
#include <string_view>
#include <vector>

namespace nnc::html {

// Escapes &, <, >, " and ' for text and attribute values.
std::string escape(std::string_view text);

struct BarSeries {
  std::string name;
  std::vector<double> values;  // one per label
};

struct ChartOptions {
  std::string title;
  std::string value_label;   // axis label of the values, e.g. "MACs"
  bool human_values = true;  // "1.2 M" instead of raw numbers on the axis and in tooltips
};

// Horizontal bar chart, one row per label, one bar per series in each row (e.g. channels
// before and after pruning). Each bar carries a <title> tooltip with the exact value.
std::string barChart(const std::vector<std::string>& labels, const std::vector<BarSeries>& series,
                     const ChartOptions& options);

struct LinePoint {
  double x = 0, y = 0;
  std::string label;  // tooltip, e.g. the step name
};

struct LineSeries {
  std::string name;
  std::vector<LinePoint> points;
};

struct LineChartOptions {
  std::string title;
  std::string x_label, y_label;
  bool log_x = false;
};

// Line chart with point markers (e.g. accuracy against size along a compression run).
std::string lineChart(const std::vector<LineSeries>& series, const LineChartOptions& options);

struct Table {
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;  // cells are text; escaped when rendered
  std::vector<bool> numeric;                   // per column: right-aligned, sorted as numbers
};

// A table whose columns sort when their header is clicked.
std::string table(const Table& table);

// Two-column key/value table for summaries.
std::string summaryTable(const std::vector<std::pair<std::string, std::string>>& rows);

class HtmlPage {
 public:
  explicit HtmlPage(std::string title) : title_(std::move(title)) {}
  // `body` is markup (charts, tables, paragraphs made with escape()).
  void addSection(const std::string& heading, std::string body);
  void addParagraph(const std::string& text);
  // The whole document. Its script marks <body data-report-ready="1"> when it ran without error
  // and records any script error in data-report-errors, so tests can check a real browser.
  std::string render() const;

 private:
  std::string title_;
  std::string body_;
};

}  // namespace nnc::html
