def test_probe_a(request):
    print("NODE", request.node.nodeid)
