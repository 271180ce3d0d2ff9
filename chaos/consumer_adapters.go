package chaos

// ConsumerSinks lists the sinks whose inbox adapter the consumer processes (Config.Consumers)
// can run.
var ConsumerSinks = []string{SinkNATS, SinkKafka, SinkRabbitMQ, SinkRedis, SinkMQTT, SinkWebhook}

// consumerAdapter returns the runner of sink's inbox adapter; nil when none is wired.
func consumerAdapter(sink string) consumerRunner {
	switch sink {
	case SinkNATS:
		return runNATSInbox
	case SinkKafka:
		return runKafkaInbox
	case SinkRabbitMQ:
		return runAMQPInbox
	case SinkRedis:
		return runRedisInbox
	case SinkMQTT:
		return runMQTTInbox
	case SinkWebhook:
		return runWebhookInbox
	}
	return nil
}
