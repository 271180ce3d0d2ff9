package mqttinbox

// SetConnectionUpHook has f run at the start of every OnConnectionUp until the returned func
// restores the previous hook.
func SetConnectionUpHook(f func()) (restore func()) {
	old := testHookConnectionUp
	testHookConnectionUp = f
	return func() { testHookConnectionUp = old }
}
