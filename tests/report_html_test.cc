// HTML reports: the building blocks, `report --report`, and the page in a real browser
// (Debian's headless Chromium, installed by tools/bootstrap.sh).

#include <gtest/gtest.h>

#include "nncompress/report/html.h"
#include "test_util.h"

namespace nnc {
namespace {

using testing::quote;
using testing::readText;
using testing::runCli;
using testing::sourcePath;
using testing::TempDir;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(HtmlTest, EscapesMarkup) {
  EXPECT_EQ(html::escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
}

TEST(HtmlTest, BarChartHasOneBarPerValueWithExactTooltip) {
  const std::string svg =
      html::barChart({"conv1", "conv<2>"}, {{"before", {64, 128}}, {"after", {32, 0}}},
                     {"Channels", "channels", false});
  EXPECT_EQ(count(svg, "<rect class=\"bar\""), 4u);
  EXPECT_NE(svg.find("<title>conv&lt;2&gt; before: 128</title>"), std::string::npos);
  EXPECT_EQ(svg.find("conv<2>"), std::string::npos);  // labels are escaped
  // The longest bar spans the plot; the zero bar stays visible as a hairline.
  EXPECT_NE(svg.find("width=\"480.0\""), std::string::npos);
  EXPECT_NE(svg.find("width=\"0.5\""), std::string::npos);
}

TEST(HtmlTest, LineChartSkipsNonFinitePoints) {
  html::LineSeries s{"accuracy", {{1, 0.9, "start"}, {2, NAN, "bad"}, {3, 0.85, "end"}}};
  const std::string svg = html::lineChart({s}, {"Trajectory", "size", "top-1", false});
  EXPECT_EQ(count(svg, "<circle class=\"point\""), 2u);
  EXPECT_EQ(count(svg, "<path class=\"line\""), 1u);
  EXPECT_NE(svg.find("<title>end: 3, 0.85</title>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(HtmlTest, PageIsSelfContained) {
  html::HtmlPage page("t <1>");
  page.addSection("S", html::table({{"a", "b"}, {{"x", "2"}}, {false, true}}));
  const std::string doc = page.render();
  EXPECT_EQ(doc.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(doc.find("<title>t &lt;1&gt;</title>"), std::string::npos);
  // Nothing is fetched: no external scripts, styles, fonts or images.
  EXPECT_EQ(doc.find("src="), std::string::npos);
  EXPECT_EQ(doc.find("href="), std::string::npos);
}

TEST(ReportHtmlCliTest, WritesAPageWithChartsAndChannelGroups) {
  TempDir dir;
  const auto out = dir / "report.html";
  auto r = runCli("report " + quote(sourcePath("models/resnet.onnx")) + " --report " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string doc = readText(out);
  EXPECT_GE(count(doc, "<svg class=\"chart"), 4u);  // ops, MACs, params, channel groups
  EXPECT_NE(doc.find("<h2>Channel groups</h2>"), std::string::npos);
  EXPECT_NE(doc.find("Not prunable"), std::string::npos);
  EXPECT_EQ(dir.fileCount(), 1u);  // no temp file left beside it
  // Text output is unchanged by --report.
  EXPECT_NE(r.out.find("Totals"), std::string::npos);
}

TEST(ReportHtmlCliTest, RefusesToWriteOverTheModel) {
  TempDir dir;
  const auto model = dir / "m.onnx";
  std::filesystem::copy_file(sourcePath("models/flatten_head.onnx"), model);
  const std::string before = readText(model);
  auto r = runCli("report " + quote(model) + " --report " + quote(model));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(readText(model), before);
}

TEST(ReportHtmlCliTest, UnwritableOutputIsAnIoError) {
  auto r = runCli("report " + quote(sourcePath("models/flatten_head.onnx")) +
                  " --report /nonexistent-dir/r.html");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("/nonexistent-dir/r.html"), std::string::npos) << r.err;
}

// Loads a page in headless Chromium and reads back the DOM after its script ran: the charts must
// be there, the script must have finished without errors, and sorting must work.
void checkInChromium(const TempDir& dir, const std::filesystem::path& page, size_t min_charts,
                     size_t min_bars) {
  const char* chromium = "/usr/bin/chromium";
  ASSERT_TRUE(std::filesystem::exists(chromium))
      << "Debian's chromium is needed for this test: run tools/bootstrap.sh";
  const auto dom_file = dir / (page.stem().string() + ".dom.html");
  const auto log_file = dir / (page.stem().string() + ".chromium.log");
  const std::string cmd =
      std::string(chromium) +
      " --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 --user-data-dir=" +
      quote(dir / "profile") + " --dump-dom " + quote("file://" + page.string() + "#selftest") +
      " >" + quote(dom_file) + " 2>" + quote(log_file);
  ASSERT_EQ(std::system(("timeout 120 " + cmd).c_str()), 0) << readText(log_file);
  const std::string dom = readText(dom_file);
  EXPECT_NE(dom.find("data-report-ready=\"1\""), std::string::npos)
      << page << ": the page script did not finish";
  const size_t errors = dom.find("data-report-errors=\"");
  EXPECT_EQ(errors, std::string::npos) << dom.substr(errors, 300);
  EXPECT_NE(dom.find("data-report-selftest=\"sorted\""), std::string::npos) << page;
  EXPECT_GE(count(dom, "<svg class=\"chart"), min_charts) << page;
  EXPECT_GE(count(dom, "<rect class=\"bar\""), min_bars) << page;
  // Console errors (e.g. a syntax error before any handler was installed) show in the log.
  EXPECT_EQ(readText(log_file).find("Uncaught"), std::string::npos) << page;
}

TEST(ReportHtmlBrowserTest, ModelReportRendersWithoutScriptErrors) {
  TempDir dir;
  const auto page = dir / "report.html";
  auto r =
      runCli("report " + quote(sourcePath("models/densenet.onnx")) + " --report " + quote(page));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  checkInChromium(dir, page, 4, 20);
}

const std::string kData = "/usr/share/datasets/fashion-mnist/";

TEST(ReportHtmlBrowserTest, PruneQuantizeAndCompressReportsRenderWithoutScriptErrors) {
  TempDir dir;
  const std::string model = quote(sourcePath("models/flatten_head.onnx"));
  const std::string calib = " --calib " + kData + "train-images-idx3-ubyte.gz --calib-size 32 ";
  const auto quantize_page = dir / "quantize.html";
  auto q = runCli("quantize " + model + " -o " + quote(dir / "q.onnx") + calib +
                  "--mean 0.2860 --std 0.3530 --report " + quote(quantize_page));
  ASSERT_EQ(q.exit_code, 0) << q.err;
  checkInChromium(dir, quantize_page, 1, 3);

  const auto prune_page = dir / "prune.html";
  auto p = runCli("prune " + quote(sourcePath("models/resnet.onnx")) + " -o " +
                  quote(dir / "p.onnx") + " --target-macs 0.5 --report " + quote(prune_page));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  checkInChromium(dir, prune_page, 1, 20);  // channels before/after per layer

  const auto compress_page = dir / "compress.html";
  auto c = runCli("compress " + model + " -o " + quote(dir / "c.onnx") + " --data " + kData +
                  "t10k-images-idx3-ubyte.gz --labels " + kData + "t10k-labels-idx1-ubyte.gz" +
                  calib + "--mean 0.2860 --std 0.3530 --eval-size 200 --step 0.3 " +
                  "--max-accuracy-drop 3 --target-size 3x --report " + quote(compress_page));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  checkInChromium(dir, compress_page, 2, 6);  // trajectory, channels before/after
  EXPECT_NE(readText(compress_page).find("<svg class=\"chart line-chart\""), std::string::npos);
}

}  // namespace
}  // namespace nnc
