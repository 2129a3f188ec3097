def handler(event, context):
    return 'pong'
