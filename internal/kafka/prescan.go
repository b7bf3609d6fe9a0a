package kafka

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxProducePartitions caps the partitions one Produce request may name. kmsg
// allocates an array by its declared length (it only checks one byte per
// element against the bytes left), and a partition entry costs several times
// its minimum wire size in memory, so a 100 MiB frame of empty partition
// entries would cost gigabytes to decode. Real producers send at most one
// entry per partition they lead, far below this.
const maxProducePartitions = 100_000

// prescanProduce walks a Produce request body without allocating and
// counts its partitions, so that decoding it is bounded by the frame size
// times a small constant. It returns an error for a request that is
// malformed or names too many partitions.
func prescanProduce(body []byte, version int16) error {
	flex := version >= 9
	r := kbin.Reader{Src: body}
	str := func() { // a (nullable) string: negative lengths are null
		if flex {
			l := int(r.Uvarint()) - 1
			if l > 0 {
				r.Span(l)
			}
			return
		}
		if l := int(r.Int16()); l > 0 {
			r.Span(l)
		}
	}
	arr := func() int {
		if flex {
			return int(r.CompactArrayLen())
		}
		return int(r.ArrayLen())
	}
	if version >= 3 {
		str() // transactional id
	}
	r.Int16() // acks
	r.Int32() // timeout
	topics := arr()
	if topics > maxProducePartitions {
		return fmt.Errorf("produce request names more than %d topics", maxProducePartitions)
	}
	total := 0
	for range max(topics, 0) {
		str() // topic
		parts := arr()
		total += max(parts, 0)
		if total > maxProducePartitions {
			return fmt.Errorf("produce request names more than %d partitions", maxProducePartitions)
		}
		for range max(parts, 0) {
			r.Int32() // partition
			var l int
			if flex {
				l = int(r.Uvarint()) - 1
			} else {
				l = int(r.Int32())
			}
			if l > 0 {
				r.Span(l)
			}
			if flex {
				kmsg.SkipTags(&r)
			}
			if !r.Ok() {
				return errMalformedProduce
			}
		}
		if flex {
			kmsg.SkipTags(&r)
		}
		if !r.Ok() {
			return errMalformedProduce
		}
	}
	if !r.Ok() {
		return errMalformedProduce
	}
	return nil
}

var errMalformedProduce = fmt.Errorf("%w: malformed produce request", errFrame)
