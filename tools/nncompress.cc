// nncompress: thin main; everything lives in the cli module.
#include "nncompress/cli/app.h"

int main(int argc, char** argv) { return nnc::cli::run(argc, argv); }
