// Transactions on kafkajs 2.2.4 against idem, run by kafkajs_test.go.
//
// usage: node txn.js BOOTSTRAP OUT IN GROUP
//
// kafkajs never uses flexible versions (InitProducerId v1, AddPartitionsToTxn
// v1, AddOffsetsToTxn v1, TxnOffsetCommit v1 without group member fields,
// EndTxn v1, Fetch v11) and its consumers are read_committed by default.
//
// 1. One producer (transactionalId GROUP-txn) runs three transactions on the
//    two partitions of OUT: "committed-a" with sendOffsets IN {0: 5, 1: 7}
//    for GROUP, committed; "aborted" with sendOffsets IN {0: 9, 1: 9},
//    aborted; "committed-b", committed.
// 2. Zombie fencing: the producer opens a fourth transaction and sends
//    "js-zombie" to partition 0; a second producer with the same
//    transactionalId initialises (InitProducerId fences the first and
//    aborts its transaction) and commits "js-after-fence-p0/p1". The
//    first producer's commit must then fail.
// 3. A kafkajs consumer group (read_committed) reads OUT from the start,
//    and a new member of GROUP reads IN from the offsets committed in
//    step 1.
//
// Prints one JSON object for the Go test to check. Exits non-zero with the
// reason on stderr when a step that must succeed fails.
'use strict'

const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, out, input, group] = process.argv.slice(2)

const kafka = new Kafka({
  clientId: 'idem-interop-kafkajs-txn',
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
})

const values = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`)
const messages = vals => vals.map((v, i) => ({ value: v, partition: i % 2 }))
const offsets = (p0, p1) => [{ topic: input, partitions: [{ partition: 0, offset: String(p0) }, { partition: 1, offset: String(p1) }] }]
const errInfo = e => ({ name: e.name, type: e.type || '', code: e.code === undefined ? null : e.code, retriable: !!e.retriable, message: e.message })

function newProducer() {
  return kafka.producer({ transactionalId: `${group}-txn`, idempotent: true, maxInFlightRequests: 1 })
}

// consume reads topic with a new member of groupId, from the group's
// committed offsets (or the start), until n messages arrived.
async function consume(groupId, topic, n) {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, sessionTimeout: 10000, heartbeatInterval: 1000 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const got = []
  let timer
  try {
    await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${groupId} consumed ${got.length} of ${n} messages of ${topic}: ${got}`)), 20000)
      consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error))
      consumer.run({
        eachMessage: async ({ message }) => {
          got.push(message.value.toString())
          if (got.length >= n) resolve()
        },
      }).catch(reject)
    })
  } finally {
    clearTimeout(timer)
    await consumer.disconnect()
  }
  return got
}

async function main() {
  const committedA = values('js-committed-a', 10)
  const aborted = values('js-aborted', 10)
  const committedB = values('js-committed-b', 10)

  const producer = newProducer()
  await producer.connect()

  let txn = await producer.transaction()
  await txn.send({ topic: out, messages: messages(committedA) })
  await txn.sendOffsets({ consumerGroupId: group, topics: offsets(5, 7) })
  await txn.commit()

  txn = await producer.transaction()
  await txn.send({ topic: out, messages: messages(aborted) })
  await txn.sendOffsets({ consumerGroupId: group, topics: offsets(9, 9) })
  await txn.abort()

  txn = await producer.transaction()
  await txn.send({ topic: out, messages: messages(committedB) })
  await txn.commit()

  // Zombie fencing.
  const zombieTxn = await producer.transaction()
  await zombieTxn.send({ topic: out, messages: [{ value: 'js-zombie', partition: 0 }] })
  const successor = newProducer()
  await successor.connect()
  const afterFence = ['js-after-fence-p0', 'js-after-fence-p1']
  const next = await successor.transaction() // InitProducerId: fences the zombie
  let fenced = null
  try {
    await zombieTxn.commit()
  } catch (e) {
    fenced = errInfo(e)
  }
  await next.send({ topic: out, messages: messages(afterFence) })
  await next.commit()
  await successor.disconnect()
  await producer.disconnect().catch(() => {})

  const committed = [...committedA, ...committedB, ...afterFence]
  const readCommitted = await consume(`${group}-readers`, out, committed.length)
  const groupRead = await consume(group, input, 5 + 3)

  process.stdout.write(JSON.stringify({ committed, aborted, fenced, readCommitted, groupRead }))
}

main().then(
  () => process.exit(0),
  e => {
    process.stderr.write(`kafkajs: ${JSON.stringify(errInfo(e))}\n${e.stack}\n`)
    process.exit(1)
  },
)
