// Package mqttinbox is the inbox adapter for MQTT 5: it consumes what the MQTT sink
// publishes and applies each message once through package inbox.
package mqttinbox
