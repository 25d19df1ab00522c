#include "common/stdcopy.h"

namespace kiln::stdcopy {

void encode_header(int stream, uint32_t length, char header[kHeaderSize]) {
  header[0] = static_cast<char>(stream);
  header[1] = header[2] = header[3] = 0;
  header[4] = static_cast<char>(length >> 24);
  header[5] = static_cast<char>(length >> 16);
  header[6] = static_cast<char>(length >> 8);
  header[7] = static_cast<char>(length);
}

std::string frame(int stream, std::string_view payload) {
  std::string out(kHeaderSize, '\0');
  encode_header(stream, static_cast<uint32_t>(payload.size()), out.data());
  out.append(payload);
  return out;
}

bool Demuxer::feed(std::string_view data, const Sink& sink) {
  buffer_.append(data);
  size_t offset = 0;
  bool keep_going = true;
  while (keep_going && buffer_.size() - offset >= kHeaderSize) {
    const auto* header = reinterpret_cast<const unsigned char*>(buffer_.data() + offset);
    size_t length =
        (size_t{header[4]} << 24) | (size_t{header[5]} << 16) | (size_t{header[6]} << 8) | header[7];
    if (buffer_.size() - offset - kHeaderSize < length) break;
    keep_going = sink(header[0], std::string_view(buffer_).substr(offset + kHeaderSize, length));
    offset += kHeaderSize + length;
  }
  buffer_.erase(0, offset);
  return keep_going;
}

}  // namespace kiln::stdcopy
