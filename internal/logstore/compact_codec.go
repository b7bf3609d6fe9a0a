package logstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// The cleaner rewrites a batch it removes records from with the codec the
// producer chose, as Kafka does. The codecs are the ones Kafka clients use
// (the same libraries franz-go links); nothing here implements a format.

// Compression codec ids (attributes bits 0-2).
const (
	codecNone   = 0
	codecGzip   = 1
	codecSnappy = 2
	codecLz4    = 3
	codecZstd   = 4
)

// MaxDecompressedBatch bounds the records of one batch once decompressed,
// for the cleaner and for the key check of compacted topics. A batch that
// would expand beyond it is kept whole by the cleaner and refused at produce
// time, so a compression bomb costs at most this much memory per batch.
const MaxDecompressedBatch = 64 << 20

// errTooLarge reports a batch whose records exceed MaxDecompressedBatch.
var errTooLarge = fmt.Errorf("%w: records exceed %d bytes once decompressed", ErrInvalidBatch, MaxDecompressedBatch)

// xerialMagic starts snappy data framed the way the Java client's
// snappy-java stream writes it (a header, then length-prefixed blocks);
// other clients send one raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// xerialBlock is the block size of the Java client's snappy stream.
const xerialBlock = 32 << 10

// codecs holds reusable coders; one goroutine uses a codecs at a time.
type codecs struct {
	zdec *zstd.Decoder
	zenc *zstd.Encoder
	gzr  *gzip.Reader
	gzw  *gzip.Writer
	lzr  *lz4.Reader
	lzw  *lz4.Writer
	buf  bytes.Buffer
}

var codecPool = sync.Pool{New: func() any { return new(codecs) }}

// decompress appends the decompressed records area src, compressed with
// codec, to dst[:0], refusing more than limit bytes.
func (c *codecs) decompress(dst []byte, codec int8, src []byte, limit int) ([]byte, error) {
	dst = dst[:0]
	switch codec {
	case codecNone:
		if len(src) > limit {
			return nil, errTooLarge
		}
		return append(dst, src...), nil
	case codecGzip:
		if c.gzr == nil {
			r, err := gzip.NewReader(bytes.NewReader(src))
			if err != nil {
				return nil, fmt.Errorf("%w: gzip: %v", ErrInvalidBatch, err)
			}
			c.gzr = r
		} else if err := c.gzr.Reset(bytes.NewReader(src)); err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrInvalidBatch, err)
		}
		return readLimited(dst, c.gzr, limit, "gzip")
	case codecSnappy:
		return snappyDecode(dst, src, limit)
	case codecLz4:
		if c.lzr == nil {
			c.lzr = lz4.NewReader(bytes.NewReader(src))
		} else {
			c.lzr.Reset(bytes.NewReader(src))
		}
		return readLimited(dst, c.lzr, limit, "lz4")
	case codecZstd:
		if c.zdec == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
			if err != nil {
				return nil, err
			}
			c.zdec = d
		}
		out, err := c.zdec.DecodeAll(src, dst)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || len(out) > limit {
			return nil, errTooLarge
		}
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrInvalidBatch, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalidBatch, codec)
}

// readLimited appends what r yields to dst, refusing more than limit bytes.
func readLimited(dst []byte, r io.Reader, limit int, name string) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	n, err := buf.ReadFrom(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidBatch, name, err)
	}
	if n > int64(limit) {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// snappyDecode decodes one raw snappy block or xerial-framed blocks.
func snappyDecode(dst, src []byte, limit int) ([]byte, error) {
	block := func(dst, b []byte) ([]byte, error) {
		n, err := s2.DecodedLen(b)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrInvalidBatch, err)
		}
		if len(dst)+n > limit {
			return nil, errTooLarge
		}
		start := len(dst)
		dst = append(dst, make([]byte, n)...)
		if _, err := s2.Decode(dst[start:], b); err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrInvalidBatch, err)
		}
		return dst, nil
	}
	if len(src) < 16 || !bytes.HasPrefix(src, xerialMagic) {
		return block(dst, src)
	}
	rest := src[16:] // magic, version, compatible version
	for len(rest) > 0 {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: snappy: truncated xerial block length", ErrInvalidBatch)
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: snappy: xerial block of %d bytes, %d left", ErrInvalidBatch, n, len(rest))
		}
		var err error
		if dst, err = block(dst, rest[:n]); err != nil {
			return nil, err
		}
		rest = rest[n:]
	}
	return dst, nil
}

// compress appends records compressed with codec to dst. Snappy keeps the
// framing the original batch had (xerial), so Java consumers of old
// versions read it as they read the original.
func (c *codecs) compress(dst []byte, codec int8, records []byte, xerial bool) ([]byte, error) {
	switch codec {
	case codecNone:
		return append(dst, records...), nil
	case codecGzip:
		c.buf.Reset()
		if c.gzw == nil {
			c.gzw = gzip.NewWriter(&c.buf)
		} else {
			c.gzw.Reset(&c.buf)
		}
		if _, err := c.gzw.Write(records); err != nil {
			return nil, err
		}
		if err := c.gzw.Close(); err != nil {
			return nil, err
		}
		return append(dst, c.buf.Bytes()...), nil
	case codecSnappy:
		if !xerial {
			return append(dst, s2.EncodeSnappy(nil, records)...), nil
		}
		dst = append(dst, xerialMagic...)
		dst = binary.BigEndian.AppendUint32(dst, 1) // version
		dst = binary.BigEndian.AppendUint32(dst, 1) // compatible version
		for len(records) > 0 {
			n := min(len(records), xerialBlock)
			enc := s2.EncodeSnappy(nil, records[:n])
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(enc)))
			dst = append(dst, enc...)
			records = records[n:]
		}
		return dst, nil
	case codecLz4:
		c.buf.Reset()
		if c.lzw == nil {
			c.lzw = lz4.NewWriter(&c.buf)
		} else {
			c.lzw.Reset(&c.buf)
		}
		if _, err := c.lzw.Write(records); err != nil {
			return nil, err
		}
		if err := c.lzw.Close(); err != nil {
			return nil, err
		}
		return append(dst, c.buf.Bytes()...), nil
	case codecZstd:
		if c.zenc == nil {
			e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
			if err != nil {
				return nil, err
			}
			c.zenc = e
		}
		return c.zenc.EncodeAll(records, dst), nil
	}
	return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalidBatch, codec)
}

// isXerial reports whether a snappy records area uses the Java framing.
func isXerial(src []byte) bool { return len(src) >= 16 && bytes.HasPrefix(src, xerialMagic) }
