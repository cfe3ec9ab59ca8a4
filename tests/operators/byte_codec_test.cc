#include "operators/byte_codec.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace sp {
namespace {

using namespace byte_codec;

TEST(ByteCodec, WritesLittleEndianWhateverTheHost) {
  std::string out;
  put_u64(out, 0x0102030405060708ULL);
  put_u32(out, 0x0a0b0c0dU);
  put_u8(out, 0xee);
  put_i64(out, -2);
  put_f64(out, 1.0);  // 0x3ff0000000000000
  const std::string want = std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8) +
                           std::string("\x0d\x0c\x0b\x0a", 4) + "\xee" +
                           std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8) +
                           std::string("\x00\x00\x00\x00\x00\x00\xf0\x3f", 8);
  EXPECT_EQ(out, want);
  char raw[8];
  store_u64(raw, 0x0102030405060708ULL);
  EXPECT_EQ(std::string(raw, 8), want.substr(0, 8));
  EXPECT_EQ(load_u64(want.data()), 0x0102030405060708ULL);
  EXPECT_EQ(load_u32(want.data() + 8), 0x0a0b0c0dU);
}

TEST(ByteCodec, ReaderRoundTripsEveryField) {
  std::string out;
  put_u8(out, 7);
  put_u32(out, 123456789);
  put_u64(out, UINT64_MAX);
  put_i64(out, INT64_MIN);
  put_f64(out, -0.1);
  put_str(out, "brand/acme");
  put_str(out, "");
  out.append("raw");
  Reader in(out);
  EXPECT_EQ(in.u8(), 7);
  EXPECT_EQ(in.u32(), 123456789u);
  EXPECT_EQ(in.u64(), UINT64_MAX);
  EXPECT_EQ(in.i64(), INT64_MIN);
  EXPECT_EQ(in.f64(), -0.1);
  EXPECT_EQ(in.str(), "brand/acme");
  EXPECT_EQ(in.str(), "");
  EXPECT_FALSE(in.done());
  EXPECT_EQ(in.remaining(), 3u);
  EXPECT_EQ(in.bytes(3), "raw");
  EXPECT_TRUE(in.done());
}

TEST(ByteCodec, AShortReadLatchesFailure) {
  std::string out;
  put_u64(out, 5);
  out.append("abc");
  Reader in(out);
  EXPECT_EQ(in.u64(), 5u);
  EXPECT_EQ(in.u64(), 0u);  // 3 bytes left: fails
  EXPECT_FALSE(in.ok());
  EXPECT_EQ(in.u8(), 0u);  // stays failed although a byte would be there
  EXPECT_FALSE(in.done());
}

TEST(ByteCodec, AHugeStringLengthFailsWithoutReading) {
  std::string out;
  put_u64(out, UINT64_MAX);
  out.append("short");
  Reader in(out);
  EXPECT_EQ(in.str(), "");
  EXPECT_FALSE(in.ok());
}

TEST(ByteCodec, VarintsRoundTripAtEveryWidth) {
  std::string out;
  const uint64_t values[] = {0, 1, 127, 128, 16383, 16384, uint64_t{1} << 35, UINT64_MAX};
  for (uint64_t v : values) put_var(out, v);
  const int64_t signed_values[] = {0, -1, 1, -64, 64, INT64_MIN, INT64_MAX};
  for (int64_t v : signed_values) put_svar(out, v);
  put_vstr(out, "brand");
  Reader in(out);
  for (uint64_t v : values) EXPECT_EQ(in.var(), v);
  for (int64_t v : signed_values) EXPECT_EQ(in.svar(), v);
  EXPECT_EQ(in.vstr(), "brand");
  EXPECT_TRUE(in.done());
  std::string small;
  put_var(small, 127);
  put_svar(small, -64);
  EXPECT_EQ(small.size(), 2u);  // one byte each
}

TEST(ByteCodec, AnOverlongOrTruncatedVarintFails) {
  const std::string eleven(11, '\xff');
  Reader overlong(eleven);
  EXPECT_EQ(overlong.var(), 0u);
  EXPECT_FALSE(overlong.ok());
  std::string too_big(9, '\xff');
  too_big.push_back('\x02');  // bit 64
  Reader overflow(too_big);
  overflow.var();
  EXPECT_FALSE(overflow.ok());
  Reader truncated(std::string_view("\x80\x80"));
  truncated.var();
  EXPECT_FALSE(truncated.ok());
}

}  // namespace
}  // namespace sp
