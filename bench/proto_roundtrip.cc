// Baseline for bench/load_save.sh: parse an ONNX file with protobuf and serialize it again,
// nothing else. nncompress's load+save is compared against this.
#include <fcntl.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s IN.onnx OUT.onnx\n", argv[0]);
    return 2;
  }
  onnx::ModelProto proto;
  const int in = ::open(argv[1], O_RDONLY);
  if (in < 0) return 4;
  {
    google::protobuf::io::FileInputStream stream(in);
    if (!proto.ParseFromZeroCopyStream(&stream)) return 3;
  }
  ::close(in);
  const int out = ::open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0) return 4;
  {
    google::protobuf::io::FileOutputStream stream(out);
    if (!proto.SerializeToZeroCopyStream(&stream)) return 4;
  }
  ::close(out);
  return 0;
}
